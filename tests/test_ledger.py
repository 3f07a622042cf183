"""The ledger on a real SQLite file: states, failures, re-queueing, survival across reopen."""

from __future__ import annotations

import sqlite3
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from archiver.names import Recording, parse_name
from archiver.state.ledger import Ledger

IST = ZoneInfo("Europe/Istanbul")


def _rec(n: int, day: str = "20161118") -> Recording:
    return parse_name("pbx", "trunk-1", f"{day}-1100{n:02d}-100-200-1479456211.{n}-5.gsm", IST)


def test_discover_is_idempotent_and_keeps_state(tmp_path: Path) -> None:
    ledger = Ledger.open(tmp_path / "sub" / "ledger.sqlite3")
    a, b = _rec(1), _rec(2)
    ledger.discover([a, b])
    ledger.advance(a.key, "verified", object_key="k/a.mp3")
    ledger.discover([a, b])  # a second poll lists them again
    states = ledger.states_for_day("pbx", "2016-11-18")
    assert states[a.name].state == "verified"
    assert states[a.name].object_key == "k/a.mp3"
    assert states[b.name].state == "discovered"
    assert ledger.states_for_day("pbx", "2016-11-19") == {}


def test_failures_count_attempts_and_requeue(tmp_path: Path) -> None:
    ledger = Ledger.open(tmp_path / "l.sqlite3")
    a, b = _rec(1), _rec(2)
    ledger.discover([a, b])
    ledger.fail(a.key, "download: PBX 'pbx' answered HTTP 503", retryable=True)
    ledger.fail(a.key, "download: PBX 'pbx' answered HTTP 503", retryable=True)
    ledger.fail(b.key, "bad audio: not GSM", retryable=False)
    entry = ledger.get(a.key)
    assert entry is not None and entry.attempts == 2 and entry.retryable
    assert ledger.counts()["failed"] == 2
    assert [f.key for f in ledger.recent_failures()] == [b.key, a.key]
    assert ledger.requeue_failed(only_retryable=True) == 1
    assert ledger.counts()["failed"] == 1
    assert ledger.requeue_failed() == 1
    assert ledger.counts() == {
        "discovered": 2, "downloaded": 0, "transcoded": 0, "verified": 0, "failed": 0, "empty": 0
    }  # fmt: skip


def test_state_survives_reopen(tmp_path: Path) -> None:
    path = tmp_path / "l.sqlite3"
    ledger = Ledger.open(path)
    ledger.discover([_rec(1)])
    ledger.advance(_rec(1).key, "verified", object_key="x")
    ledger.close()
    again = Ledger.open(path)
    entry = again.get(_rec(1).key)
    assert entry is not None and entry.state == "verified"


def test_unknown_columns_and_states_rejected(tmp_path: Path) -> None:
    ledger = Ledger.open(tmp_path / "l.sqlite3")
    ledger.discover([_rec(1)])
    with pytest.raises(ValueError, match="unknown ledger columns"):
        ledger.advance(_rec(1).key, "verified", colour="x")
    with pytest.raises(sqlite3.IntegrityError):
        ledger.advance(_rec(1).key, "uploaded-ish")  # type: ignore[arg-type]
