"""The ledger on both backends (a real SQLite file, a real PostgreSQL database): states,
failures, re-queueing, survival across reopen, and the leases several workers share it with."""

from __future__ import annotations

import sqlite3
import subprocess
import time
from zoneinfo import ZoneInfo

import psycopg
import pytest

from archiver.config import Config
from archiver.names import Recording, parse_name
from archiver.state.api import State, free_dead_local_leases, open_state, worker_id

IST = ZoneInfo("Europe/Istanbul")


def _rec(n: int, day: str = "20161118") -> Recording:
    return parse_name("pbx", "trunk-1", f"{day}-1100{n:02d}-100-200-1479456211.{n}-5.gsm", IST)


def test_discover_is_idempotent_and_keeps_state(state: State) -> None:
    ledger = state.ledger
    a, b = _rec(1), _rec(2)
    ledger.discover([a, b])
    ledger.advance(a.key, "verified", object_key="k/a.mp3")
    ledger.discover([a, b])  # a second poll lists them again
    states = ledger.states_for_day("pbx", "2016-11-18")
    assert states[a.name].state == "verified"
    assert states[a.name].object_key == "k/a.mp3"
    assert states[b.name].state == "discovered"
    assert ledger.states_for_day("pbx", "2016-11-19") == {}


def test_failures_count_attempts_and_requeue(state: State) -> None:
    ledger = state.ledger
    a, b = _rec(1), _rec(2)
    ledger.discover([a, b])
    ledger.fail(a.key, "download: PBX 'pbx' answered HTTP 503", retryable=True)
    ledger.fail(a.key, "download: PBX 'pbx' answered HTTP 503", retryable=True)
    time.sleep(0.01)  # recent_failures orders by time
    ledger.fail(b.key, "bad audio: not GSM", retryable=False)
    entry = ledger.get(a.key)
    assert entry is not None and entry.attempts == 2 and entry.retryable
    assert ledger.counts()["failed"] == 2
    assert [f.key for f in ledger.recent_failures()] == [b.key, a.key]
    assert ledger.requeue_failed(only_retryable=True) == 1
    assert ledger.counts()["failed"] == 1
    assert ledger.requeue_failed() == 1
    assert ledger.counts() == {
        "discovered": 2, "downloaded": 0, "transcoded": 0, "verified": 0, "failed": 0, "empty": 0,
        "destroyed": 0,
    }  # fmt: skip


def test_state_survives_reopen(state_cfg: Config) -> None:
    first = open_state(state_cfg)
    first.ledger.discover([_rec(1)])
    first.ledger.advance(_rec(1).key, "verified", object_key="x")
    first.close()
    again = open_state(state_cfg)  # the schema is there already: nothing to migrate
    try:
        entry = again.ledger.get(_rec(1).key)
        assert entry is not None and entry.state == "verified"
    finally:
        again.close()


def test_unknown_columns_and_states_rejected(state: State) -> None:
    ledger = state.ledger
    ledger.discover([_rec(1)])
    with pytest.raises(ValueError, match="unknown ledger columns"):
        ledger.advance(_rec(1).key, "verified", colour="x")
    with pytest.raises((sqlite3.IntegrityError, psycopg.IntegrityError), match=r"(?i)check"):
        ledger.advance(_rec(1).key, "uploaded-ish")  # type: ignore[arg-type]


def test_restore_never_downgrades_verified(state: State) -> None:
    ledger = state.ledger
    a, b = _rec(1), _rec(2)
    ledger.discover([a])
    ledger.advance(a.key, "verified", object_key="k/a")
    kept = ledger.restore(a, "empty", object_key="q/a", source_sha256=None, mp3_md5=None,
                          mp3_bytes=None)  # fmt: skip
    added = ledger.restore(b, "verified", object_key="k/b", source_sha256="ab", mp3_md5="m",
                           mp3_bytes=10)  # fmt: skip
    assert (kept, added) == (False, True)
    entry = ledger.get(b.key)
    assert entry is not None and entry.state == "verified" and entry.object_key == "k/b"


def test_one_worker_holds_a_recording_until_its_lease_ends(state: State) -> None:
    ledger = state.ledger
    a = _rec(1)
    ledger.discover([a])
    assert ledger.claim(a.key, "w1", lease_s=60)
    assert not ledger.claim(a.key, "w2", lease_s=60)  # held by w1
    assert ledger.claim(a.key, "w1", lease_s=60)  # w1 again: its own
    assert ledger.renew(a.key, "w1", lease_s=0.05)
    time.sleep(0.2)
    assert ledger.claim(a.key, "w2", lease_s=60)  # w1's lease ran out (w1 died)
    assert not ledger.renew(a.key, "w1", lease_s=60)  # w1 learns it lost it
    # w1 stalled past its lease: its late writes must not touch w2's recording.
    assert not ledger.advance(a.key, "downloaded", owner="w1")
    assert not ledger.fail(a.key, "late", retryable=True, owner="w1")
    assert ledger.advance(a.key, "downloaded", owner="w2")
    ledger.release(a.key, "w2")
    assert ledger.claim(a.key, "w3", lease_s=60)  # released: free at once


def test_final_recordings_cannot_be_claimed(state: State) -> None:
    ledger = state.ledger
    a, b = _rec(1), _rec(2)
    ledger.discover([a, b])
    ledger.advance(a.key, "verified", object_key="k")
    ledger.mark_empty(b.key, "header only")
    assert not ledger.claim(a.key, "w1", lease_s=60)
    assert not ledger.claim(b.key, "w1", lease_s=60)
    assert not ledger.claim(_rec(3).key, "w1", lease_s=60)  # unknown: never discovered


def test_a_dead_local_workers_leases_are_freed_at_start(state: State) -> None:
    ledger = state.ledger
    a, b = _rec(1), _rec(2)
    ledger.discover([a, b])
    gone = f"{worker_id().split(':')[0]}:{_exited_pid()}:abc"  # this host, a PID now free
    alive = worker_id()  # this process
    elsewhere = "other-host:1:abc"
    assert ledger.claim(a.key, gone, lease_s=600)
    assert ledger.claim(b.key, alive, lease_s=600)
    assert ledger.claim(_rec(3).key, elsewhere, lease_s=600) is False  # not discovered
    ledger.discover([_rec(3)])
    assert ledger.claim(_rec(3).key, elsewhere, lease_s=600)
    assert free_dead_local_leases(ledger) == [gone]
    assert ledger.claim(a.key, "w2", lease_s=60)  # free at once
    assert not ledger.claim(b.key, "w2", lease_s=60)  # its owner lives
    assert not ledger.claim(_rec(3).key, "w2", lease_s=60)  # another host: wait for the lease


def _exited_pid() -> int:
    child = subprocess.Popen(["true"])
    child.wait()
    return child.pid
