"""The lifecycle's tables on SQLite and PostgreSQL: a destruction claimed, finished once and
logged in the hash chain; a held recording never claimed; a destroyed name never archived
again."""

from __future__ import annotations

from datetime import date
from zoneinfo import ZoneInfo

from archiver.names import parse_name
from archiver.state import CatalogueEntry, Claim, State, catalogue_entry

IST = ZoneInfo("Europe/Istanbul")


def archived(
    state: State, n: int, caller: str = "100", callee: str = "903123320404"
) -> CatalogueEntry:
    rec = parse_name(
        "pbx",
        "trunk-sip-1",
        f"20161118-1103{n:02d}-{caller}-{callee}-14794562{n:02d}.1-25.gsm",
        IST,
    )
    state.ledger.discover([rec])
    state.ledger.advance(rec.key, "transcoded", source_sha256="ab" * 32)
    entry = catalogue_entry(rec, object_key=f"rec/{n}.mp3", size_bytes=100)
    assert state.ledger.mark_verified(entry)
    return entry


def _claim(state: State, entry: CatalogueEntry) -> Claim | str:
    return state.destructions.claim(
        entry, reason="retention", basis="retention[0] keep_days=30", command="test",
        username="tester",
    )  # fmt: skip


def test_a_destruction_is_claimed_finished_and_logged_once(state: State) -> None:
    entry = archived(state, 1)
    claim = _claim(state, entry)
    assert isinstance(claim, Claim)
    assert _claim(state, entry) == "claimed"  # another process finds it claimed
    assert [c.recording_key for c, _ in state.destructions.pending()] == [entry.recording_key]
    logged = state.destructions.finish(claim, entry, versions=2)
    assert logged is not None and logged.versions == 2 and logged.source_sha256 == "ab" * 32
    assert logged.started_at == "2016-11-18T11:03:01+03:00" and logged.callee == "903123320404"
    assert state.destructions.finish(claim, entry, versions=2) is None  # finished already
    assert state.destructions.count() == 1 and state.destructions.pending() == []
    assert state.catalogue.get(entry.object_key) is None
    ledger_row = state.ledger.get(entry.recording_key)
    assert ledger_row is not None and ledger_row.state == "destroyed"
    assert _claim(state, entry) == "gone"
    assert state.destructions.of_object(entry.object_key) == logged
    assert state.destructions.verify().intact


def test_a_destroyed_name_is_never_archived_again(state: State) -> None:
    entry = archived(state, 2)
    claim = _claim(state, entry)
    assert isinstance(claim, Claim)
    state.destructions.finish(claim, entry, versions=1)
    rec = parse_name("pbx", "trunk-sip-1", entry.source_name, IST)
    state.ledger.discover([rec])  # the PBX still lists it
    assert not state.ledger.claim(rec.key, "worker", 60)
    assert not state.ledger.advance(rec.key, "downloaded")
    assert not state.ledger.mark_verified(entry)
    row = state.ledger.get(rec.key)
    assert row is not None and row.state == "destroyed"
    assert state.ledger.counts()["destroyed"] == 1


def test_a_held_recording_is_not_claimed_until_released(state: State) -> None:
    entry = archived(state, 3, callee="905412535962")
    other = archived(state, 4)
    hold = state.holds.add("CASE-1", by="tester", number="905412535962", note="dispute")
    assert [h.case_ref for h in state.holds.covering(entry)] == ["CASE-1"]
    assert state.holds.covering(other) == []
    assert [e.object_key for e in state.holds.entries(hold)] == [entry.object_key]
    assert _claim(state, entry) == "held"
    day = state.holds.add("CASE-2", by="tester", from_day=date(2016, 11, 18),
                          to_day=date(2016, 11, 18), pbx="pbx")  # fmt: skip
    assert _claim(state, other) == "held"
    assert [h.id for h in state.holds.release("CASE-2", by="tester")] == [day.id]
    assert state.holds.release("CASE-2", by="tester") == []
    assert isinstance(_claim(state, other), Claim)
    state.holds.release("CASE-1", by="tester")
    assert isinstance(_claim(state, entry), Claim)
    assert [h.active for h in state.holds.listed(include_released=True)] == [False, False]


def test_a_claim_is_cancelled_and_runs_are_recorded(state: State) -> None:
    entry = archived(state, 5)
    claim = _claim(state, entry)
    assert isinstance(claim, Claim)
    state.destructions.cancel(claim)
    assert state.destructions.pending() == []
    run = state.destructions.start_run("archiver retention run")
    assert state.destructions.last_run() is None
    state.destructions.finish_run(run, destroyed=0, kept=1, failed=1, outcome="some_failed")
    last = state.destructions.last_run()
    assert last is not None and (last.kept, last.failed, last.outcome) == (1, 1, "some_failed")


def test_a_claim_that_slipped_in_as_another_finished_is_dropped_not_logged_twice(
    state: State,
) -> None:
    """PostgreSQL: a claim's INSERT that waited for another process's finishing transaction
    (which deletes that pending row) goes ahead once it commits. The claim then finds the
    recording gone, and a finish of such a claim logs nothing (the log's UNIQUE index would
    refuse it) and drops it."""
    entry = archived(state, 6)
    claim = _claim(state, entry)
    assert isinstance(claim, Claim)
    assert state.destructions.finish(claim, entry, versions=1) is not None
    base = state.db  # type: ignore[attr-defined]
    base.execute(  # the claim that slipped in, as the race leaves it
        "INSERT INTO destruction_pending (recording_key, object_key, reason, basis, command,"
        " username, claimed_at_s) VALUES (?, ?, 'retention', 'x', 'test', 'late', 0)",
        (entry.recording_key, entry.object_key),
    )
    assert state.destructions.finish(claim, entry, versions=0) is None
    assert state.destructions.pending() == [] and state.destructions.count() == 1
    assert _claim(state, entry) == "gone" and state.destructions.pending() == []
