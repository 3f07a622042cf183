"""Faults produced for real, in process: a faulty PBX, bad audio, hostile listings, a lost ledger.

Simulator over real HTTP, real ffmpeg, real SeaweedFS, a real SQLite file. Process kills, S3
outages and the daemon's credential back-off are in test_crash.py (they need subprocesses).
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import logging
from collections import Counter
from collections.abc import AsyncIterator, Callable
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
import structlog
import support
from aiohttp import web
from structlog.testing import capture_logs

from archiver import cli
from archiver.config import S3Config
from archiver.lab.seaweed import SeaweedS3
from archiver.lab.simulator import CORPUS_KEY, REQUESTED_KEY, SimulatorOptions
from archiver.lab.simulator.hostile import hostile_body, hostile_lines
from archiver.lab.simulator.server import add_arguments, options_from_args
from archiver.names import RECORDING_ROOT, InvalidName, parse_path
from archiver.observe import FAILURE_REASONS
from archiver.pipeline import PollReport
from archiver.pipeline.backoff import CredentialBackoff
from archiver.pipeline.rebuild import reconcile
from archiver.s3 import ObjectInfo, S3Store, Unmappable, map_object
from archiver.service import Metrics
from archiver.state import Catalogue, CatalogueEntry, SearchQuery, catalogue_entry
from archiver.state.ledger import Ledger

PASSWORD = "Reliable-Secret-5150"
IST = ZoneInfo("Europe/Istanbul")
DAY = date(2016, 11, 18)


class Rig(support.Rig):
    async def run(self, polls: int = 1) -> list[PollReport]:
        """Archive DAY `polls` times with one Archiver (one process life)."""
        return await self.archive([DAY], polls=polls)

    def body(self, key: str) -> bytes:
        response = self.s3.client().get_object(Bucket=self.cfg.s3.bucket, Key=key)
        data: bytes = response["Body"].read()
        return data

    @property
    def requested(self) -> list[str]:
        requested: list[str] = self.runner.app[REQUESTED_KEY]
        return list(requested)

    def valid(self) -> list[Any]:
        corpus = self.runner.app[CORPUS_KEY]
        return [
            r
            for r in corpus.recordings()
            if r.valid and r.started_local is not None and r.started_local.date() == DAY
        ]

    def ledger_entry(self, sim: Any) -> Any:
        ledger = Ledger.open(self.cfg.state.path)
        try:
            return ledger.get(f"pbx/{sim.folder}/{sim.name}")
        finally:
            ledger.close()


@pytest.fixture
async def make_rig(
    tmp_path: Path, s3_config: S3Config, s3_env: dict[str, str], seaweed: SeaweedS3
) -> AsyncIterator[Callable[..., Any]]:
    runners: list[web.AppRunner] = []

    async def make(config: dict[str, Any] | None = None, **faults: Any) -> Rig:
        settings = {"seed": 23, "per_day": 6, "max_duration_s": 20, **faults}
        options = SimulatorOptions(
            username="admin", password=PASSWORD, start=DAY, days=1, **settings
        )
        tables: dict[str, dict[str, Any]] = {"retry": {"attempts": 10}}
        for section, values in (config or {}).items():
            tables[section] = {**tables.get(section, {}), **values}
        base = await support.start_rig(options, s3_config, seaweed, tmp_path, tables)
        runners.append(base.runner)
        return Rig(cfg=base.cfg, options=options, runner=base.runner, s3=seaweed, tmp=tmp_path)

    yield make
    for runner in runners:
        await runner.cleanup()


def _md5_b64(data: bytes) -> str:
    return base64.b64encode(hashlib.md5(data).digest()).decode()  # noqa: S324 -- S3's convention


def _assert_exactly_once(rig: Rig, objects: dict[str, dict[str, Any]]) -> None:
    """Every valid recording of DAY is in the bucket once, from the PBX's exact bytes."""
    corpus = rig.runner.app[CORPUS_KEY]
    by_source = Counter(head["Metadata"]["source-name"] for head in objects.values())
    assert sorted(by_source) == sorted(r.name for r in rig.valid())
    assert set(by_source.values()) == {1}
    by_name = {r.name: r for r in rig.valid()}
    for key, head in objects.items():
        sim = by_name[head["Metadata"]["source-name"]]
        # A cut-short download would have another SHA-256: none was transcoded or uploaded.
        expected = hashlib.sha256(corpus.audio_bytes(sim)).hexdigest()
        assert head["Metadata"]["source-sha256"] == expected, key
        assert _md5_b64(rig.body(key)) == head["Metadata"]["md5"], key
    assert list(rig.cfg.state.work_path.iterdir()) == []


async def test_faulty_pbx_every_recording_once_and_each_retry_logged(make_rig: Any) -> None:
    rig: Rig = await make_rig(
        fail_rate=0.15, truncate_rate=0.15, reset_rate=0.1, html_errors=True, seed=3
    )
    # capture_logs replaces the processors, so merge the context variables the daemon binds.
    with capture_logs(processors=[structlog.contextvars.merge_contextvars]) as events:
        (report,) = await rig.run()
    assert report.failed == 0 and report.archived == len(rig.valid()), report
    _assert_exactly_once(rig, rig.objects())
    retries = [e for e in events if e["event"] == "retrying"]
    # 40% of ~20 requests fail: some retries must have happened, each one event with fields:
    # what (reason), where (stage, pbx), which attempt of how many, when the next one starts;
    # none of stamina's callable/args/kwargs noise, no doubled prefix.
    assert len(retries) >= 3
    attempts = rig.cfg.retry.attempts
    for event in retries:
        assert 1 <= event["attempt"] < event["attempts"] == attempts, event
        assert event["next_attempt_in_s"] >= 0
        assert event["stage"] in {"list", "download"} and event["pbx"] == "pbx"
        assert event["reason"].startswith(("listing: PBX 'pbx'", "download: PBX 'pbx'")), event
        assert PASSWORD not in event["reason"]
        assert not {"callable", "args", "kwargs", "caused_by"} & set(event), event


async def test_a_failed_listing_is_an_error_never_no_recordings(make_rig: Any) -> None:
    rig: Rig = await make_rig({"retry": {"attempts": 2}}, fail_rate=1.0)
    (report,) = await rig.run()
    assert report.listing_errors and "answered HTTP 50" in report.listing_errors[0]
    assert report.listed == 0 and report.due == 0


async def test_exhausted_attempts_fail_with_the_last_reason_until_requeued(make_rig: Any) -> None:
    rig: Rig = await make_rig(
        {"retry": {"attempts": 2, "max_recording_attempts": 1}}, fail_rate=0.5, seed=8
    )
    (first,) = await rig.run()
    assert first.due == len(rig.valid()) and 0 < first.failed < first.due
    ledger = Ledger.open(rig.cfg.state.path)
    try:
        failed = ledger.recent_failures(100)
        assert len(failed) == first.failed
        assert all(e.retryable and "answered HTTP 50" in (e.last_error or "") for e in failed)
        (second,) = await rig.run()  # out of attempts: left alone
        assert second.due == 0
        assert ledger.requeue_failed() == first.failed  # what `archiver retry --failed` does
    finally:
        ledger.close()
    (third,) = await rig.run()
    assert third.due == first.failed


async def test_bad_audio_fails_with_a_reason_and_the_daemon_goes_on(
    make_rig: Any, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    rig: Rig = await make_rig()
    corpus = rig.runner.app[CORPUS_KEY]
    at = datetime(2016, 11, 18, 7, 0, 0, tzinfo=IST)
    junk = corpus.add(caller="100", callee="200", duration_s=5, fmt="other", extension="gsm",
                      started_local=at)  # fmt: skip
    empty = corpus.add(caller="101", callee="201", duration_s=9, fmt="wav_empty",
                       started_local=at + timedelta(seconds=1))  # fmt: skip
    liar = corpus.add(caller="102", callee="202", duration_s=4, fmt="wav_lying",
                      started_local=at + timedelta(seconds=2))  # fmt: skip
    metrics = Metrics(["pbx"])
    (report,) = await rig.archive([DAY], observer=metrics)
    failures = {
        reason: support.metric_value(metrics.render().decode(), "archiver_failures_total",
                                     pbx="pbx", reason=reason)
        for reason in FAILURE_REASONS
    }  # fmt: skip
    assert {reason: n for reason, n in failures.items() if n} == {"bad_audio": 2}
    bad = {junk.name, empty.name, liar.name}
    assert report.archived == len(rig.valid()) - 3
    assert (report.failed, report.empty) == (2, 1)
    assert {r.name for r in rig.valid()} - bad == {
        h["Metadata"]["source-name"] for h in rig.objects().values()
    }
    for sim, words in ((junk, "bad audio"), (liar, "claims")):
        entry = rig.ledger_entry(sim)
        assert entry.state == "failed" and not entry.retryable and words in entry.last_error
    entry = rig.ledger_entry(empty)
    assert entry.state == "empty" and "no complete audio frame" in entry.last_error

    # `archiver status` shows each failure with its reason.
    config = tmp_path / "status.toml"
    config.write_text(
        f'[pbx]\nurl = "{rig.cfg.pbx[0].url}"\nusername = "admin"\npassword = "x"\n'
        f'[s3]\nbucket = "{rig.cfg.s3.bucket}"\n[state]\npath = "{rig.cfg.state.path}"\n',
        "utf-8",
    )
    try:
        assert cli.main(["status", "--config", str(config)]) == 0
    finally:  # main() pointed logging at capsys's stream, which closes after this test
        structlog.reset_defaults()
        logging.getLogger().handlers.clear()
    out = capsys.readouterr().out
    assert "failed 2" in out and "empty 1" in out
    assert f"{junk.name}" in out and "bad audio" in out and "claims" in out
    # Failed for good: the next poll leaves them alone.
    (again,) = await rig.run()
    assert (again.due, again.failed) == (0, 0)


async def test_quarantine_keeps_the_original_of_an_empty_recording(make_rig: Any) -> None:
    rig: Rig = await make_rig({"transcode": {"on_empty": "quarantine"}})
    corpus = rig.runner.app[CORPUS_KEY]
    empty = corpus.add(caller="101", callee="201", duration_s=9, fmt="wav_empty",
                       started_local=datetime(2016, 11, 18, 7, 0, 0, tzinfo=IST))  # fmt: skip
    (report,) = await rig.run()
    assert report.empty == 1 and report.failed == 0
    key = f"recordings/quarantine/pbx/{empty.folder}/{empty.name}"
    head = rig.objects()[key]
    original = corpus.audio_bytes(empty)
    assert rig.body(key) == original
    meta = head["Metadata"]
    assert meta["outcome"] == "empty" and meta["source-name"] == empty.name
    assert meta["source-sha256"] == hashlib.sha256(original).hexdigest()
    # Not claimed to be an MP3 (SeaweedFS answers with a type guessed from the extension).
    assert head["ContentType"] != "audio/mpeg"
    entry = rig.ledger_entry(empty)
    assert entry.state == "empty" and entry.object_key == key and key in entry.last_error

    # A rebuilt ledger knows the quarantined recording as `empty`, the others as `verified`.
    for suffix in ("", "-wal", "-shm"):
        Path(f"{rig.cfg.state.path}{suffix}").unlink(missing_ok=True)
    ledger = Ledger.open(rig.cfg.state.path)
    try:
        found = reconcile(rig.cfg, S3Store(rig.cfg.s3), ledger)
    finally:
        ledger.close()
    assert (found.empty, found.verified, found.unmapped) == (1, report.archived, [])
    assert rig.ledger_entry(empty).state == "empty"


def test_hostile_lines_are_all_refused_by_the_parser() -> None:
    example = "/var/spool/asterisk/monitor/recording/trunk-sip-9021/" + (
        "20161118-110332-100-200-1479456211.1-6.gsm"
    )
    lines = hostile_lines(1000, seed=1, examples=[example])
    assert len({line[:600] for line in lines if line.strip()}) == 900  # distinct, 10% blank
    assert any(len(line) > 10_000 for line in lines)
    for line in lines:
        if line.strip():
            with pytest.raises(InvalidName):
                parse_path("pbx", line, IST)
    body = hostile_body([example], 20, seed=1)
    assert body.startswith("\ufeff".encode()) and b"\r\n" in body


async def test_hostile_listing_nothing_requested_valid_ones_archived(make_rig: Any) -> None:
    rig: Rig = await make_rig(hostile_lines=1000)
    with capture_logs() as events:
        first, second = await rig.run(polls=2)
    valid = rig.valid()
    assert first.archived == len(valid) and first.failed == 0
    _assert_exactly_once(rig, rig.objects())
    # Nothing but the valid recordings was ever asked for.
    assert sorted(rig.requested) == sorted(r.relative_path for r in valid)
    # Counted every time (900 non-blank hostile lines + the day's junk); logged at most once
    # per name and at most 50 new ones per listing, the rest summed up and logged later.
    junk_lines = first.listed - len(valid) - 900
    bad = 900 + junk_lines
    assert first.invalid == second.invalid == bad
    logged = Counter(e["line"] for e in events if e["event"] == "invalid_name")
    assert len(logged) == 100 and set(logged.values()) == {1}
    left = [e["count"] for e in events if e["event"] == "invalid_names_not_logged"]
    assert left == [bad - 50, bad - 100]
    assert second.due == 0


async def test_lost_ledger_is_rebuilt_from_the_bucket(make_rig: Any) -> None:
    rig: Rig = await make_rig()
    (first,) = await rig.run()
    before = {key: head["LastModified"] for key, head in rig.objects().items()}
    assert first.archived == len(before) > 0
    client = rig.s3.client()
    client.put_object(Bucket=rig.cfg.s3.bucket, Key="recordings/someone-elses.txt", Body=b"hi")
    downloads = len(rig.requested)
    for suffix in ("", "-wal", "-shm"):
        Path(f"{rig.cfg.state.path}{suffix}").unlink(missing_ok=True)

    ledger = Ledger.open(rig.cfg.state.path)
    try:
        # A catalogue row whose object is gone is dropped by the rebuild.
        gone = next(iter(Catalogue(ledger.db).search(SearchQuery()).items), None)
        assert gone is None  # the file was deleted: empty before reconcile
        Catalogue(ledger.db).upsert(_any_entry(rig, before))
        found = reconcile(rig.cfg, S3Store(rig.cfg.s3), ledger)
        assert ledger.counts()["verified"] == len(before)
        catalogue = Catalogue(ledger.db)
        # The catalogue is rebuilt from the bucket: every archived object, nothing else.
        page = catalogue.search(SearchQuery(limit=500))
        assert sorted(entry.object_key for entry in page.items) == sorted(before)
        entry = catalogue.get(page.items[0].object_key)
        assert entry is not None and entry.size_bytes == rig.objects()[entry.object_key][
            "ContentLength"]  # fmt: skip
    finally:
        ledger.close()
    assert (found.objects, found.verified) == (len(before) + 1, len(before))
    assert found.catalogue_removed == 1
    assert [key for key, _ in found.unmapped] == ["recordings/someone-elses.txt"]

    (after,) = await rig.run()
    assert (after.due, after.archived, after.already_present) == (0, 0, 0)
    assert len(rig.requested) == downloads  # not even downloaded again
    now = {key: head["LastModified"] for key, head in rig.objects().items()}
    assert {k: v for k, v in now.items() if k in before} == before


def _any_entry(rig: Rig, archived: dict[str, Any]) -> CatalogueEntry:
    """A catalogue entry for a recording the bucket does not hold."""
    rec = parse_path("pbx", f"{RECORDING_ROOT}trunk-x/20161118-000000-1-2-1479416400.1-1.gsm", IST)
    return catalogue_entry(rec, object_key="recordings/gone.mp3", size_bytes=1)


def test_credential_backoff_doubles_to_its_cap_per_pbx() -> None:
    backoff = CredentialBackoff(base_s=60, max_s=300)
    assert backoff.allowed("a", 0)
    assert [backoff.refused("a", 0) for _ in range(4)] == [120, 240, 300, 300]
    assert not backoff.allowed("a", 299) and backoff.allowed("a", 300)
    assert backoff.allowed("b", 0)  # one PBX's bad password never slows another
    backoff.accepted("a")
    assert backoff.allowed("a", 0) and backoff.refusals("a") == 0


def test_reconcile_refuses_objects_it_cannot_trust() -> None:
    md5 = hashlib.md5(b"mp3").digest()  # noqa: S324 -- S3's convention
    meta = {
        "pbx": "pbx",
        "trunk": "trunk-sip-1",
        "source-name": "20161118-110332-100-200-1479456211.1-6.wav",
        "source-sha256": "ab" * 32,
        "md5": base64.b64encode(md5).decode(),
    }
    when = datetime(2016, 11, 18, tzinfo=IST)

    def info(key: str = "recordings/pbx/x.mp3", etag: str = md5.hex(), **changes: str) -> Any:
        return ObjectInfo(key, 3, etag, when, "audio/mpeg", {**meta, **changes})

    zones = {"pbx": IST}
    rec, read, state = map_object(info(), zones, "recordings")
    assert (rec.key, state) == ("pbx/trunk-sip-1/" + meta["source-name"], "verified")
    assert (read.source_sha256, read.md5, read.caller) == (meta["source-sha256"], meta["md5"], "")
    assert map_object(info(etag="0" * 32 + "-2"), zones, "recordings")[2] == "verified"
    for bad, words in (
        (info(etag="0" * 32), "ETag"),
        (info(pbx="other"), "not configured"),
        (info(**{"source-name": "../../etc/passwd"}), "source-name"),
        (info(**{"source-sha256": "x"}), "source-sha256"),
        (info(md5="not base64!"), "md5"),
        (info(key="recordings/quarantine/pbx/x.wav"), "outcome=empty"),
    ):
        with pytest.raises(Unmappable, match=words):
            map_object(bad, zones, "recordings")


def test_simulator_command_line_takes_hostile_lines() -> None:
    parser = argparse.ArgumentParser()
    add_arguments(parser)
    args = parser.parse_args(["--username", "u", "--password", "p", "--hostile-lines", "1000"])
    assert options_from_args(args).hostile_lines == 1000
    with pytest.raises(ValueError, match="hostile_lines"):
        SimulatorOptions(hostile_lines=-1)
