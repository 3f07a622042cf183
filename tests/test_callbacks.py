"""The call-result receiver over real HTTP, into a real SQLite call log."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web

from archiver.calls.autocall import AutocallRequest, build_request
from archiver.calls.callbacks import (
    CALLBACK_STATS_KEY,
    FINAL_STATUSES,
    RateLimiter,
    add_callback_routes,
    classify_status,
)
from archiver.config import AutocallConfig, CallbacksConfig
from archiver.credentials import callbacks_token
from archiver.service.http import Health, build_http_app, start_http
from archiver.state import state_threads
from archiver.state.calls import CallLog

TOKEN = "cb-token-0123456789abcdef"
NUMBER = "903123320404"
DOCUMENTED = [
    "ANSWER", "BUSY", "NOANSWER", "CANCEL", "CONGESTION", "CHANUNAVAIL", "DONTCALL", "TORTURE",
    "INVALIDARGS", "FAILED",
]  # fmt: skip


@dataclass
class Receiver:
    url: str
    calls: CallLog
    app: web.Application
    session: aiohttp.ClientSession

    async def get(self, query: str = "", *, token: str = TOKEN, **kwargs: Any) -> tuple[int, str]:
        async with self.session.get(f"{self.url}/{token}{query}", **kwargs) as response:
            return response.status, await response.text()


async def _receiver(tmp_path: Path, **settings: Any) -> AsyncIterator[Receiver]:
    cfg = CallbacksConfig(enabled=True, token=TOKEN, **settings)  # type: ignore[arg-type]
    calls = CallLog.open(tmp_path / "ledger.sqlite3")
    app = build_http_app(Health())
    add_callback_routes(app, cfg, calls, state_threads(calls.db))
    runner, port = await start_http(app, "127.0.0.1:0")
    session = aiohttp.ClientSession()
    try:
        yield Receiver(f"http://127.0.0.1:{port}/pbx/call-result", calls, app, session)
    finally:
        await session.close()
        await runner.cleanup()
        calls.close()


@pytest.fixture
async def receiver(tmp_path: Path) -> AsyncIterator[Receiver]:
    async for made in _receiver(tmp_path, per_source_burst=1000, global_burst=1000):
        yield made


async def test_every_documented_status_is_final(receiver: Receiver) -> None:
    assert set(DOCUMENTED) == FINAL_STATUSES
    for status in DOCUMENTED:
        assert await receiver.get(f"?sonuc={status}&telefon={NUMBER}&son=1") == (200, "ok\n")
    events = receiver.calls.events(number=NUMBER)
    assert [(e.status, e.kind, e.ended) for e in events] == [(s, "final", True) for s in DOCUMENTED]
    assert all(e.source == "127.0.0.1" and e.received_at > 0 for e in events)
    stats = receiver.app[CALLBACK_STATS_KEY]
    assert stats.events == {("final", status): 1 for status in DOCUMENTED}
    assert await receiver.get("?sonuc=BUSY", token="not-the-token-at-all") == (403, "forbidden\n")
    assert (
        "archiver_call_results_total",
        {"kind": "final", "status": "BUSY"},
        1,
    ) in stats.samples()
    refused = ("archiver_call_results_refused_total", {"http_status": "403", "reason": "bad_token"})
    assert (*refused, 1) in stats.samples()


async def test_progress_codes_and_son_encodings(receiver: Receiver) -> None:
    encodings = ["1", "0", "true", "false", "EVET", "hayir", "hay%C4%B1r", "True"]
    expected = [True, False, True, False, True, False, False, True]
    for code, son in zip("123456789", encodings, strict=False):
        assert (await receiver.get(f"?sonuc={code}&telefon={NUMBER}&son={son}"))[0] == 200
    events = receiver.calls.events(number=NUMBER)
    assert [e.kind for e in events] == ["progress"] * len(encodings)
    assert [e.status for e in events] == list("12345678")
    assert [e.ended for e in events] == expected


async def test_unknown_statuses_are_stored_flagged_never_dropped(receiver: Receiver) -> None:
    weird = ["RINGING", "0", "10", "ANSWER;DROP", "%C3%A7a%C4%9Fr%C4%B1", "x" * 200]
    for status in weird:
        assert (await receiver.get(f"?sonuc={status}&telefon={NUMBER}&son=0"))[0] == 200
    events = receiver.calls.events(number=NUMBER)
    assert [e.kind for e in events] == ["unknown"] * len(weird)
    stored = [e.status for e in events]
    assert stored[:4] == ["RINGING", "0", "10", "ANSWER;DROP"]
    assert stored[4] == "\\xe7a\\u011fr\\u0131"  # escaped, printable ASCII
    assert stored[5] == "x" * 64
    assert receiver.app[CALLBACK_STATS_KEY].events == {("unknown", "unknown"): len(weird)}
    # Lower case documented words are the same status.
    assert classify_status("answer") == ("ANSWER", "final")


async def test_what_a_pbx_may_plausibly_send_is_kept_flagged(receiver: Receiver) -> None:
    """The PBX will not send a result again: each of these gets 200 and is stored, with flags
    naming what was missing or odd (the issue's three cases first)."""
    cases = {
        f"?sonuc=3&telefon={NUMBER}&son=": (NUMBER, "3", "progress", False, ("son_empty",)),
        f"?sonuc=NOANSWER&telefon={NUMBER}": (NUMBER, "NOANSWER", "final", False, ("son_missing",)),
        "?sonuc=BUSY&telefon=%2B903123320404&son=1": (NUMBER, "BUSY", "final", True, ()),
        # A `+` left unescaped reads as a space: it is still a + (and 0090/0 forms normalise).
        "?sonuc=BUSY&telefon=+903123320404&son=1": (NUMBER, "BUSY", "final", True, ()),
        "?sonuc=BUSY&telefon=00903123320404&son=1": (NUMBER, "BUSY", "final", True, ()),
        f"?sonuc=&telefon={NUMBER}&son=1": (NUMBER, "", "unknown", True, ("sonuc_empty",)),
        f"?telefon={NUMBER}&son=1": (NUMBER, "", "unknown", True, ("sonuc_missing",)),
        "?sonuc=BUSY&son=1": ("", "BUSY", "final", True, ("telefon_missing",)),
        "?sonuc=BUSY&telefon=90312abc&son=1": (
            "90312abc", "BUSY", "final", True, ("telefon_not_turkish",)
        ),
        f"?sonuc=BUSY&telefon={NUMBER}&son=maybe": (
            NUMBER, "BUSY", "final", False, ("son_unknown",)
        ),
        f"?sonuc=BUSY&sonuc=ANSWER&telefon={NUMBER}&son=1": (
            NUMBER, "BUSY", "final", True, ("sonuc_repeated",)
        ),
        f"?sonuc=ANSWER&telefon={NUMBER}&son=1&extra=1": (NUMBER, "ANSWER", "final", True, ()),
    }  # fmt: skip
    for query in cases:
        assert await receiver.get(query) == (200, "ok\n"), query
    stored = [(e.number, e.status, e.kind, e.ended, e.flags) for e in receiver.calls.events()]
    assert stored == list(cases.values())
    stats = receiver.app[CALLBACK_STATS_KEY]
    assert stats.refused == {}
    assert stats.flagged["son_empty"] == 1 and stats.flagged["telefon_missing"] == 1
    assert ("archiver_call_results_flagged_total", {"flag": "son_missing"}, 1) in stats.samples()


async def test_only_what_cannot_be_a_call_result_is_refused(receiver: Receiver) -> None:
    cases = {
        f"?sonuc=BUSY%0A&telefon={NUMBER}&son=1": "sonuc holds a control character",
        f"?sonuc=BUSY&telefon={NUMBER}%00&son=1": "telefon holds a control character",
        f"?sonuc=BUSY&telefon={NUMBER}&son=1%09": "son holds a control character",
    }
    for query, reason in cases.items():
        status, text = await receiver.get(query)
        assert status == 400 and reason in text, (query, text)
    status, _ = await receiver.get(f"?sonuc=BUSY&telefon={NUMBER}&son=1", data=b"a body")
    assert status == 413
    status, _ = await receiver.get("?sonuc=" + "x" * 600)
    assert status == 414
    assert receiver.calls.events() == []
    stats = receiver.app[CALLBACK_STATS_KEY]
    assert stats.refused == {
        (400, "control_character"): len(cases),
        (413, "has_body"): 1,
        (414, "too_long"): 1,
    }
    samples = stats.samples()
    for code, reason in ((400, "control_character"), (413, "has_body"), (414, "too_long")):
        labels = {"http_status": str(code), "reason": reason}
        assert any(name.endswith("refused_total") and got == labels for name, got, _ in samples)


async def test_wrong_token_is_403_and_stores_nothing(receiver: Receiver) -> None:
    query = f"?sonuc=ANSWER&telefon={NUMBER}&son=1"
    for token in ["wrong-token-0123456789abcdef", TOKEN[:-1], TOKEN + "x", "a"]:
        assert (await receiver.get(query, token=token))[0] == 403
    async with receiver.session.get(receiver.url + query) as response:
        assert response.status == 404  # no token segment at all: not our route
    assert receiver.calls.events() == []


async def test_size_limits(receiver: Receiver) -> None:
    long_query = f"?sonuc=ANSWER&telefon={NUMBER}&son=1&pad=" + "a" * 600
    assert (await receiver.get(long_query))[0] == 414
    status, _ = await receiver.get(f"?sonuc=ANSWER&telefon={NUMBER}&son=1", data=b"x" * 10)
    assert status == 413
    assert receiver.calls.events() == []


async def test_rate_limit_per_source_answers_429(tmp_path: Path) -> None:
    async for receiver in _receiver(tmp_path, per_source_burst=5, per_source_rate_per_s=0.01):
        statuses = [(await receiver.get(f"?sonuc=1&telefon={NUMBER}&son=0"))[0] for _ in range(8)]
        assert statuses == [200] * 5 + [429] * 3
        async with receiver.session.get(f"{receiver.url}/{TOKEN}?sonuc=1") as response:
            assert int(response.headers["Retry-After"]) >= 1
        # Wrong tokens spend the same budget: guessing the token is throttled too.
        assert (await receiver.get("?x=1", token="guess-guess-guess-guess"))[0] == 429
        assert len(receiver.calls.events()) == 5


def test_rate_limiter_buckets_refill_and_global_cap() -> None:
    now = [0.0]
    limiter = RateLimiter(
        per_source_rate_per_s=1.0, per_source_burst=2, global_rate_per_s=2.0, global_burst=3,
        max_sources=2, clock=lambda: now[0],
    )  # fmt: skip
    assert [limiter.acquire("a") for _ in range(3)] == [0, 0, 1.0]
    assert limiter.acquire("b") == 0  # b's own bucket is full; the global one has 1 left
    assert limiter.acquire("c") == pytest.approx(0.5)  # global bucket empty: 0.5 s at 2/s
    now[0] = 1.0
    assert limiter.acquire("a") == 0  # refilled
    for source in ("d", "e", "f"):  # more sources than max_sources: oldest forgotten
        now[0] += 10
        limiter.acquire(source)
    assert len(limiter._sources) == 2


async def test_events_tie_to_the_latest_call_to_that_number(receiver: Receiver) -> None:
    defaults = AutocallConfig()
    first = _begin(receiver.calls, build_request(NUMBER, defaults), dial_at=1000.0)
    second = _begin(receiver.calls, build_request("03123320404", defaults))
    receiver.calls.finish_placing(second, accepted=True, reply="OK")
    other = _begin(receiver.calls, build_request("905412535962", defaults))
    receiver.calls.finish_placing(other, accepted=False, reply="refused")
    for query in ["?sonuc=1&telefon=903123320404&son=0", "?sonuc=BUSY&telefon=3123320404&son=1",
                  "?sonuc=ANSWER&telefon=905412535962&son=1"]:  # fmt: skip
        assert (await receiver.get(query))[0] == 200
    events = receiver.calls.events()
    # The 10-digit form is normalised; a refused call gets no events (they are kept, unmatched).
    assert [(e.autocall_id, e.number) for e in events] == [
        (second, NUMBER), (second, NUMBER), (None, "905412535962"),
    ]  # fmt: skip
    summary = receiver.calls.get(second)
    assert summary is not None and (summary.status, summary.ended, summary.events) == (
        "BUSY", True, 2,
    )  # fmt: skip
    assert receiver.calls.get(first) is not None
    assert [c.id for c in receiver.calls.calls(number=NUMBER)] == [second, first]


def test_recordings_match_a_call_by_number_and_window(tmp_path: Path) -> None:
    from datetime import datetime, timedelta
    from zoneinfo import ZoneInfo

    from archiver.names import parse_name

    ist = ZoneInfo("Europe/Istanbul")
    calls = CallLog.open(tmp_path / "ledger.sqlite3", window_s=600)
    dialled = datetime(2026, 11, 26, 10, 0, 0, tzinfo=ist)
    call_id = _begin(calls, build_request(NUMBER, AutocallConfig()), dial_at=dialled.timestamp())
    calls.record_event(number=NUMBER, status="2", kind="progress", ended=False, source="t",
                       received_at=dialled.timestamp() + 5)  # fmt: skip

    def rec(offset_s: int, caller: str, callee: str) -> Any:
        at = dialled + timedelta(seconds=offset_s)
        name = f"{at:%Y%m%d-%H%M%S}-{caller}-{callee}-{int(at.timestamp())}.7-30.wav"
        return parse_name("pbx", "trunk-sip-908502591905", name, ist)

    assert calls.recording_metadata(rec(20, "100", "03123320404")) == {
        "autocall-id": str(call_id), "dial-status": "2",
    }  # fmt: skip
    assert calls.recording_metadata(rec(20, "+903123320404", "100"))["autocall-id"] == str(call_id)
    assert calls.recording_metadata(rec(601, "100", NUMBER)) == {}  # after the window
    assert calls.recording_metadata(rec(-301, "100", NUMBER)) == {}  # before it (beyond slack)
    assert calls.recording_metadata(rec(20, "100", "101")) == {}  # another number
    calls.record_event(number=NUMBER, status="BUSY", kind="final", ended=True, source="t",
                       received_at=dialled.timestamp() + 9)  # fmt: skip
    assert calls.recording_metadata(rec(20, "100", NUMBER))["dial-status"] == "BUSY"
    calls.close()


def test_callbacks_config_needs_listen_and_token() -> None:
    from archiver.config import ConfigError, parse_config

    base = {"pbx": {"url": "https://pbx:9999", "username": "u", "password": "p"},
            "s3": {"bucket": "recordings"}}  # fmt: skip
    with pytest.raises(ConfigError, match=r"callbacks.enabled needs http.listen and callbacks"):
        parse_config({**base, "callbacks": {"enabled": True, "token": TOKEN}}, "x")
    with pytest.raises(ConfigError, match=r"at 'callbacks\.token'"):
        parse_config({**base, "callbacks": {"token": "short"}}, "x")
    with pytest.raises(ConfigError, match="URL-safe") as caught:
        parse_config({**base, "callbacks": {"token": "has/slash/and-is-long-enough"}}, "x")
    assert "has/slash" not in str(caught.value)
    with pytest.raises(ConfigError, match=r"autocall\.pbx 'other'"):
        parse_config({**base, "autocall": {"pbx": "other"}}, "x")
    cfg = parse_config({**base, "http": {"listen": "127.0.0.1:9780"},
                        "callbacks": {"enabled": True, "token": TOKEN}}, "x")  # fmt: skip
    assert TOKEN not in repr(cfg)


async def test_token_from_a_systemd_credential(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The shipped unit's config is readable by others, so the token comes from LoadCredential=.
    (tmp_path / "callbacks-token").write_text(TOKEN + "\n", encoding="utf-8")
    monkeypatch.setenv("CREDENTIALS_DIRECTORY", str(tmp_path))
    cfg = CallbacksConfig(enabled=True, token_credential="callbacks-token")
    calls = CallLog.open(tmp_path / "ledger.sqlite3")
    app = build_http_app(Health())
    add_callback_routes(app, cfg, calls, state_threads(calls.db))
    runner, port = await start_http(app, "127.0.0.1:0")
    try:
        async with aiohttp.ClientSession() as session:
            base = f"http://127.0.0.1:{port}/pbx/call-result"
            query = f"?sonuc=BUSY&telefon={NUMBER}&son=1"
            async with session.get(f"{base}/{TOKEN}{query}") as right:
                assert right.status == 200
            async with session.get(f"{base}/{'x' * 32}{query}") as wrong:
                assert wrong.status == 403
    finally:
        await runner.cleanup()
        calls.close()
    assert [e.status for e in CallLog.open(tmp_path / "ledger.sqlite3").events(number=NUMBER)] == [
        "BUSY"
    ]


def test_token_credential_is_checked(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from archiver.config import ConfigError

    with pytest.raises(ValueError, match="not both"):
        CallbacksConfig(enabled=True, token=TOKEN, token_credential="x")  # type: ignore[arg-type]
    (tmp_path / "short").write_text("abc", encoding="utf-8")
    monkeypatch.setenv("CREDENTIALS_DIRECTORY", str(tmp_path))
    with pytest.raises(ConfigError, match="16-128"):
        callbacks_token(CallbacksConfig(enabled=True, token_credential="short"))
    with pytest.raises(ConfigError, match="cannot read secret file"):
        callbacks_token(CallbacksConfig(enabled=True, token_credential="absent"))


def _begin(calls: CallLog, request: AutocallRequest, *, dial_at: float | None = None) -> int:
    return calls.begin("pbx", request.number, request.params(), dial_at=dial_at)


def test_a_call_log_from_before_flags_gets_the_column(tmp_path: Path) -> None:
    import sqlite3

    path = tmp_path / "old.sqlite3"
    old = sqlite3.connect(path)
    old.execute(
        "CREATE TABLE call_events (id INTEGER PRIMARY KEY AUTOINCREMENT, autocall_id INTEGER,"
        " number TEXT NOT NULL, status TEXT NOT NULL, kind TEXT NOT NULL, ended INTEGER NOT NULL,"
        " received_at REAL NOT NULL, source TEXT NOT NULL)"
    )
    old.execute(
        "INSERT INTO call_events (number, status, kind, ended, received_at, source)"
        " VALUES (?, 'BUSY', 'final', 1, 1.0, 'x')",
        (NUMBER,),
    )
    old.commit()
    old.close()
    calls = CallLog.open(path)
    try:
        calls.record_event(
            number=NUMBER, status="", kind="unknown", ended=False, source="y",
            flags=("sonuc_empty", "son_missing"),
        )  # fmt: skip
        assert [e.flags for e in calls.events()] == [(), ("sonuc_empty", "son_missing")]
    finally:
        calls.close()
