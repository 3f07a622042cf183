"""The catalogue and the access log behave the same on SQLite and PostgreSQL (`state` runs each
test on both): the verified state and its row land together, number spellings, range totals from
the per-hour counts, a callback's dial status, the access log."""

from __future__ import annotations

import random
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

from archiver.names import parse_name
from archiver.state.access import AccessEvent
from archiver.state.api import State
from archiver.state.catalogue import SearchQuery, catalogue_entry

IST = ZoneInfo("Europe/Istanbul")
FOLDER = "trunk-sip-908502591905"
NAME = "20260315-101500-100-903123320404-1773558900.11-42.gsm"


def test_verified_state_and_catalogue_row_land_together(state: State) -> None:
    rec = parse_name("pbx", FOLDER, NAME, IST)
    state.ledger.discover([rec])
    assert state.ledger.claim(rec.key, "worker-a", 60)
    entry = catalogue_entry(rec, object_key="recordings/a.mp3", size_bytes=1234)
    # Another worker whose lease was taken over writes neither the state nor the row.
    assert not state.ledger.mark_verified(entry, owner="worker-b")
    assert state.catalogue.get("recordings/a.mp3") is None
    assert state.ledger.mark_verified(entry, owner="worker-a")
    stored = state.catalogue.get("recordings/a.mp3")
    assert stored is not None and stored.size_bytes == 1234
    assert stored.started_at == datetime(2026, 3, 15, 10, 15, tzinfo=IST)
    ledger_row = state.ledger.get(rec.key)
    assert ledger_row is not None and ledger_row.state == "verified"
    for spelling in ("03123320404", "3123320404", "+903123320404", "903123320404"):
        assert state.catalogue.search(SearchQuery(number=spelling)).total == 1, spelling


def test_range_totals_and_pages_agree_with_the_rows(state: State) -> None:
    rng = random.Random(3)
    template = catalogue_entry(parse_name("pbx", FOLDER, NAME, IST), object_key="k", size_bytes=1)
    base = datetime(2026, 3, 1, tzinfo=IST)
    starts = {}
    for index in range(120):
        started = base + timedelta(seconds=rng.randrange(4 * 86400))
        pbx = rng.choice(["pbx", "other"])
        key = f"k/{index:03d}.mp3"
        moved = replace(template, object_key=key, recording_key=f"r/{index}", started_at=started)
        state.catalogue.upsert(replace(moved, pbx=pbx))
        starts[f"k/{index:03d}.mp3"] = (started, pbx)
    assert state.catalogue.remove_except(k for k in starts if int(k[2:5]) % 2 == 0) == 60
    kept = {k: v for k, v in starts.items() if int(k[2:5]) % 2 == 0}
    for _ in range(20):
        low = base + timedelta(seconds=rng.randrange(5 * 86400))
        high = low + timedelta(seconds=rng.randrange(3 * 86400))
        only: str | None = rng.choice([None, "pbx"])
        expected = sorted(
            (k for k, (s, p) in kept.items() if low <= s < high and only in (None, p)),
            key=lambda k: (kept[k][0], k),
            reverse=True,
        )
        query = SearchQuery(since=low, until=high, pbx=only, limit=7)
        seen: list[str] = []
        while True:
            page = state.catalogue.search(query)
            assert page.total == len(expected)
            seen += [item.object_key for item in page.items]
            if page.next_cursor is None:
                break
            query = replace(query, cursor=page.next_cursor)
        assert seen == expected


def test_a_call_result_sets_the_dial_status(state: State) -> None:
    rec = parse_name("pbx", FOLDER, NAME, IST)
    call_id = state.calls.begin("pbx", "903123320404", {}, dial_at=rec.started_at.timestamp() - 5)
    state.calls.finish_placing(call_id, accepted=True, reply="ok")
    state.ledger.discover([rec])
    metadata = {"autocall-id": str(call_id), "dial-status": "pending"}
    state.ledger.mark_verified(catalogue_entry(rec, object_key="k.mp3", size_bytes=1,
                                               metadata=metadata))  # fmt: skip
    assert state.catalogue.search(SearchQuery(dial_status="pending")).total == 1
    state.calls.record_event(number="903123320404", status="ANSWERED", kind="final", ended=True,
                             source="t", received_at=rec.started_at.timestamp() + 60)  # fmt: skip
    entry = state.catalogue.get("k.mp3")
    assert entry is not None and (entry.dial_status, entry.autocall_id) == ("ANSWERED", call_id)


def test_access_log_on_both_backends(state: State) -> None:
    now = datetime.now(UTC)
    state.access_log.record(AccessEvent(now, "ayse", "login", "refused", "10.0.0.1"))
    state.access_log.record(AccessEvent(now, "ayse", "play", "ok", "10.0.0.1",
                                        object_key="k.mp3", byte_range="bytes=0-"))  # fmt: skip
    events = state.access_log.events(since=now - timedelta(minutes=1), username="ayse")
    assert [(e.action, e.outcome, e.byte_range) for e in events] == [
        ("login", "refused", None), ("play", "ok", "bytes=0-")]  # fmt: skip
