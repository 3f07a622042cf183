"""The call log on both backends: placed calls, callbacks tied to them, dial status."""

from __future__ import annotations

import time
from zoneinfo import ZoneInfo

from archiver.calls.autocall import AutocallRequest
from archiver.names import parse_name
from archiver.state.api import State

NUMBER = "903123320404"


def _request(number: str = NUMBER) -> AutocallRequest:
    return AutocallRequest(number, 2, 10, 1, 1, "", "-1")


def test_callbacks_tie_to_the_latest_call_and_end_it(state: State) -> None:
    calls = state.calls
    first = calls.begin("pbx", NUMBER, _request().params(), dial_at=time.time() - 100)
    second = calls.begin("pbx", NUMBER, _request().params())
    calls.finish_placing(second, accepted=True, reply="OK")
    calls.record_event(number=NUMBER, status="3", kind="progress", ended=False, source="a")
    event = calls.record_event(number=NUMBER, status="ANSWER", kind="final", ended=True, source="a")
    stray = calls.record_event(number="905550000000", status="BUSY", kind="final", ended=True,
                               source="b")  # fmt: skip
    assert event.autocall_id == second and event.id > 0
    assert stray.autocall_id is None  # kept, tied to no call
    listed = calls.calls()
    assert [c.id for c in listed] == [second, first]
    summary = calls.get(second)
    assert summary is not None
    assert (summary.state, summary.status, summary.ended, summary.events) == (
        "placed", "ANSWER", True, 2
    )  # fmt: skip
    assert summary.params["number"] == NUMBER
    assert calls.calls(number="905550000000") == []
    assert [e.status for e in calls.events(number="905550000000")] == ["BUSY"]


def test_a_recording_of_a_placed_call_gets_its_dial_status(state: State) -> None:
    calls = state.calls
    tz = ZoneInfo("Europe/Istanbul")
    rec = parse_name("pbx", "trunk-1", f"20161118-110332-100-{NUMBER}-1479456211.1297-69.wav", tz)
    assert calls.recording_metadata(rec) == {}
    call_id = calls.begin(
        "pbx", NUMBER, _request().params(), dial_at=rec.started_at.timestamp() - 5
    )
    assert calls.recording_metadata(rec) == {"autocall-id": str(call_id), "dial-status": "pending"}
