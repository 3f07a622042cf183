"""The whole pipeline: simulator over real HTTP → real ffmpeg → real SeaweedFS → real SQLite."""

from __future__ import annotations

import base64
import dataclasses
import hashlib
import subprocess
from collections.abc import AsyncIterator
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from mutagen.mp3 import MP3
from structlog.testing import capture_logs
from support import Rig, start_rig

from archiver.config import S3Config
from archiver.lab.seaweed import SeaweedS3
from archiver.lab.simulator import CORPUS_KEY, SimulatorOptions
from archiver.observe import NullObserver
from archiver.pipeline import Outcome, PollReport, RecordingWork
from archiver.pipeline.transcode import find_ffmpeg
from archiver.state.ledger import Ledger

PASSWORD = "Pipeline-Secret-4242"
IST = ZoneInfo("Europe/Istanbul")
FIRST_DAY = date(2016, 11, 17)
METADATA = {
    "pbx", "trunk", "caller", "callee", "started-at", "duration-s", "uniqueid", "source-name",
    "source-sha256", "md5",
}  # fmt: skip


async def _run(rig: Rig, days: int = 2, **kwargs: Any) -> PollReport:
    (report,) = await rig.archive([FIRST_DAY + timedelta(days=n) for n in range(days)], **kwargs)
    return report


@pytest.fixture
async def rig(
    tmp_path: Path, s3_config: S3Config, s3_env: dict[str, str], seaweed: SeaweedS3
) -> AsyncIterator[Rig]:
    options = SimulatorOptions(
        username="admin", password=PASSWORD, seed=11, start=FIRST_DAY, days=2, per_day=5,
        max_duration_s=90,
    )  # fmt: skip
    rig = await start_rig(options, s3_config, seaweed, tmp_path)
    try:
        yield rig
    finally:
        await rig.runner.cleanup()


def _valid(rig: Rig) -> list[Any]:
    return [r for r in rig.options.build_corpus().recordings() if r.valid]


async def test_every_valid_recording_lands_once_with_metadata(rig: Rig) -> None:
    report = await _run(rig)
    valid = _valid(rig)
    objects = rig.objects()
    assert report.archived == len(valid) == len(objects) == 2 * 5 + 9
    assert report.failed == 0 and report.invalid > 0  # the junk lines were seen and skipped
    corpus = rig.options.build_corpus()
    by_name = {r.name: r for r in valid}

    def sim_of(meta: dict[str, str]) -> Any:
        return by_name[meta["source-name"]]

    for key, head in objects.items():
        meta = head["Metadata"]
        # S3-compatible stores differ on empty metadata values (SeaweedFS drops them), so an
        # empty caller or callee is left out: absent means empty.
        assert set(meta) >= METADATA - {"caller", "callee"}, key
        assert (meta.get("caller", ""), meta.get("callee", "")) == (
            sim_of(meta).caller,
            sim_of(meta).callee,
        )
        assert head["ContentType"] == "audio/mpeg"
        sim = by_name[meta["source-name"]]
        assert meta["pbx"] == "pbx" and meta["trunk"] == sim.folder
        assert meta["uniqueid"] == sim.uniqueid
        assert meta["duration-s"] == str(sim.duration_s)
        assert meta["source-sha256"] == hashlib.sha256(corpus.audio_bytes(sim)).hexdigest()
        started = datetime.fromisoformat(meta["started-at"])
        assert started == sim.started_local and started.utcoffset() == timedelta(hours=3)
        # Keys use the call's local date, not UTC: a call at 01:30 Istanbul is the same day.
        assert f"/{started:%Y/%m/%d}/{started:%Y%m%d-%H%M%S}_" in key
        assert key.startswith("recordings/pbx/")
    assert not list(rig.cfg.state.work_path.iterdir())


async def test_mp3s_decode_and_match_durations(rig: Rig, tmp_path: Path) -> None:
    await _run(rig, days=1)
    client = rig.s3.client()
    by_name = {r.name: r for r in _valid(rig)}
    for key, head in list(rig.objects().items())[:6]:
        body = client.get_object(Bucket=rig.cfg.s3.bucket, Key=key)["Body"].read()
        assert base64.b64encode(hashlib.md5(body).digest()).decode() == head["Metadata"]["md5"]  # noqa: S324 -- md5 is the S3/rclone convention here, not security
        path = tmp_path / "check.mp3"
        path.write_bytes(body)
        expected_s = by_name[head["Metadata"]["source-name"]].duration_s
        info: Any = MP3(path).info  # mutagen declares `info` as None on its base class
        assert abs(info.length - expected_s) < max(0.3, 0.02 * expected_s)
        decoded = subprocess.run(
            [find_ffmpeg(None), "-nostdin", "-v", "error", "-i", str(path), "-f", "null", "-"],
            capture_output=True, check=False,
        )  # fmt: skip
        assert decoded.returncode == 0 and not decoded.stderr


async def test_restart_uploads_nothing_again(rig: Rig) -> None:
    first = await _run(rig)
    before = {k: h["LastModified"] for k, h in rig.objects().items()}
    second = await _run(rig)
    assert first.archived == len(before)
    assert (second.due, second.archived, second.already_present) == (0, 0, 0)
    assert {k: h["LastModified"] for k, h in rig.objects().items()} == before


async def test_crash_after_upload_before_ledger_write_is_not_a_duplicate(rig: Rig) -> None:
    await _run(rig, days=1)
    before = {k: h["LastModified"] for k, h in rig.objects().items()}
    # As if the process died right after the PUT: the ledger still says "transcoded".
    ledger = Ledger.open(rig.cfg.state.path)
    victims = list(ledger.states_for_day("pbx", FIRST_DAY.isoformat()).values())[:3]
    for entry in victims:
        ledger.advance(entry.key, "transcoded")
    ledger.close()
    report = await _run(rig, days=1)
    assert (report.due, report.already_present, report.archived) == (3, 3, 0)
    assert {k: h["LastModified"] for k, h in rig.objects().items()} == before


async def test_unsettled_recordings_wait(rig: Rig) -> None:
    first_day = [r for r in _valid(rig) if r.started_local.date() == FIRST_DAY]
    latest_end = max(r.started_local + timedelta(seconds=r.duration_s) for r in first_day)
    # The clock stands one second before the last call of the day (plus settle) has ended.
    report = await _run(rig, days=1, clock=lambda: latest_end - timedelta(seconds=1))
    assert report.unsettled >= 1
    assert report.archived == len(first_day) - report.unsettled
    later = await _run(rig, days=1, clock=lambda: latest_end + timedelta(seconds=1))
    assert later.archived == report.unsettled


async def test_one_bad_recording_does_not_stop_the_others(rig: Rig) -> None:
    corpus = rig.runner.app[CORPUS_KEY]
    empty = corpus.add(caller="100", callee="903123320404", duration_s=7, fmt="wav_empty",
                       started_local=datetime(2016, 11, 17, 9, 0, 1, tzinfo=IST))  # fmt: skip
    report = await _run(rig, days=1)
    assert report.empty == 1
    assert report.archived == len([r for r in _valid(rig) if r.started_local.date() == FIRST_DAY])
    ledger = Ledger.open(rig.cfg.state.path)
    entry = ledger.get(f"pbx/{empty.folder}/{empty.name}")
    ledger.close()
    assert entry is not None and entry.state == "empty" and entry.last_error


@pytest.mark.parametrize("engine", ["pydub", "ffmpeg"])
async def test_each_fixed_engine_archives_everything_too(rig: Rig, engine: str) -> None:
    # The other tests run the default, "auto".
    transcode = rig.cfg.transcode.model_copy(update={"engine": engine, "batch_files": 4})
    cfg = rig.cfg.model_copy(update={"transcode": transcode})
    report = await _run(dataclasses.replace(rig, cfg=cfg))
    valid = _valid(rig)
    assert report.archived == len(valid) and report.failed == 0
    names = {head["Metadata"]["source-name"] for head in rig.objects().values()}
    assert names == {r.name for r in valid}
    assert not list(cfg.state.work_path.iterdir())


class _DuePerDay(NullObserver):
    def __init__(self) -> None:
        self.due: list[int] = []

    def listed(self, pbx: str, *, ok: bool, discovered: int, due: int) -> None:
        self.due.append(due)


async def test_a_backfill_lists_and_plans_day_by_day(rig: Rig) -> None:
    observer = _DuePerDay()
    report = await _run(rig, observer=observer)
    first = len([r for r in _valid(rig) if r.started_local.date() == FIRST_DAY])
    assert observer.due == [first, len(_valid(rig)) - first]  # once per listed day
    assert report.days_planned == report.days_listed == 2
    assert report.due == report.archived == len(_valid(rig))


async def test_an_error_escaping_one_recording_is_counted_and_the_others_go_on(
    rig: Rig, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A fault outside a recording's own handling (here: the first recording's handler raises,
    as a ledger write on a full disk would) ends in the report as failed, is logged with its
    reason, and cancels nothing else."""
    archiver = rig.archiver()
    real = RecordingWork.archive
    seen: list[str] = []

    async def first_one_breaks(work: RecordingWork, client: Any, rec: Any) -> Outcome:
        seen.append(rec.name)
        if len(seen) == 1:
            raise RuntimeError("disk full")
        return await real(work, client, rec)

    monkeypatch.setattr(RecordingWork, "archive", first_one_breaks)
    try:
        with capture_logs() as events:
            report = await archiver.archive_days({"pbx": [FIRST_DAY, FIRST_DAY + timedelta(1)]})
    finally:
        for client in archiver.clients.values():
            await client.close()
        archiver.close()
        archiver.ledger.close()
    valid = _valid(rig)
    assert (report.failed, report.archived, report.unfinished) == (1, len(valid) - 1, 0)
    failed = [e for e in events if e["event"] == "failed"]
    assert len(failed) == 1 and "RuntimeError: disk full" in failed[0]["reason"]
