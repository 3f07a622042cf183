"""The pipeline against the simulator's `--cgi-strict` mode: a PBX that decodes `%XX` only,
answers HTTP/1.0 text/html without Content-Length and closes the connection to end a body, and
answers an unknown command (or one it cannot run) with 200 and an empty page.

Real simulator over HTTP, real ffmpeg, real SeaweedFS, real SQLite.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import pytest
from support import Rig, metric_value, start_rig

from archiver.config import S3Config
from archiver.lab.seaweed import SeaweedS3
from archiver.lab.simulator import (
    REQUEST_LINES_KEY,
    REQUESTED_KEY,
    SimulatorOptions,
    gsm_raw_bytes,
    wav_pcm_bytes,
)
from archiver.pipeline.completeness import shortfall
from archiver.service.metrics import Metrics
from archiver.state.ledger import Ledger

PASSWORD = "Strict-Secret-5150"
FIRST_DAY = date(2016, 11, 17)


async def _rig(
    tmp_path: Path, s3_config: S3Config, seaweed: SeaweedS3, **options: Any
) -> AsyncIterator[Rig]:
    values: dict[str, Any] = {"seed": 21, **options}
    sim = SimulatorOptions(
        username="admin", password=PASSWORD, start=FIRST_DAY, days=2, per_day=5,
        max_duration_s=40, cgi_strict=True, **values,
    )  # fmt: skip
    # Cut bodies cost up to three downloads each (see pipeline/completeness.py): more attempts.
    rig = await start_rig(sim, s3_config, seaweed, tmp_path, {"retry": {"attempts": 8}})
    try:
        yield rig
    finally:
        await rig.runner.cleanup()


@pytest.fixture
async def rig(
    tmp_path: Path, s3_config: S3Config, s3_env: dict[str, str], seaweed: SeaweedS3
) -> AsyncIterator[Rig]:
    async for made in _rig(tmp_path, s3_config, seaweed):
        yield made


def _valid(rig: Rig) -> list[Any]:
    return [r for r in rig.options.build_corpus().recordings() if r.valid]


def _states(rig: Rig) -> dict[str, int]:
    ledger = Ledger.open(rig.cfg.state.path)
    try:
        return {state: n for state, n in ledger.counts().items() if n}
    finally:
        ledger.close()


async def test_pipeline_archives_everything_from_a_strict_cgi(rig: Rig) -> None:
    (report,) = await rig.archive([FIRST_DAY, FIRST_DAY + timedelta(days=1)])
    valid = _valid(rig)
    assert report.listing_errors == []
    assert report.archived == len(valid) == len(rig.objects()) == 2 * 5 + 9
    assert report.failed == 0
    lines = rig.runner.app[REQUEST_LINES_KEY]
    assert all(" HTTP/1.1" in line and "+" not in line.partition("password=")[0] for line in lines)


async def test_connections_closed_early_are_caught_and_fetched_again(
    tmp_path: Path, s3_config: S3Config, s3_env: dict[str, str], seaweed: SeaweedS3
) -> None:
    """A cut connection looks like a complete, shorter body: the audio's own length against
    the name's duration (and a WAV's fixed header) must catch every one."""
    async for rig in _rig(tmp_path, s3_config, seaweed, truncate_rate=0.3, reset_rate=0.1, seed=4):
        (report,) = await rig.archive([FIRST_DAY, FIRST_DAY + timedelta(days=1)])
        valid = _valid(rig)
        assert report.archived == len(valid), report
        for head in rig.objects().values():
            meta = head["Metadata"]
            assert int(meta["duration-s"]) > 0
        ledger = Ledger.open(rig.cfg.state.path)
        try:
            for sim in valid:
                entry = ledger.get(f"pbx/{sim.folder}/{sim.name}")
                assert entry is not None and entry.state == "verified", sim.name
        finally:
            ledger.close()
        # Downloads were repeated: the cuts happened and were not taken for whole files.
        requested = rig.runner.app[REQUESTED_KEY]
        assert len(requested) > len(valid)
        audio = await _audio_lengths(rig)
        by_name = {sim.name: sim.duration_s for sim in valid}
        for name, seconds in audio.items():
            if by_name[name] >= 4:  # shorter ones are within the tolerance even when halved
                assert seconds == pytest.approx(by_name[name], abs=0.5), name


async def _audio_lengths(rig: Rig) -> dict[str, float]:
    ledger = Ledger.open(rig.cfg.state.path)
    try:
        rows = ledger._db.execute(
            "SELECT name, audio_s FROM recordings WHERE state='verified'"
        ).rows
        return {name: float(seconds) for name, seconds in rows}
    finally:
        ledger.close()


async def test_commands_that_do_not_run_are_not_no_recordings(
    tmp_path: Path, s3_config: S3Config, s3_env: dict[str, str], seaweed: SeaweedS3
) -> None:
    async for rig in _rig(tmp_path, s3_config, seaweed, empty_commands="all"):
        metrics = Metrics(["pbx"])
        (report,) = await rig.archive([FIRST_DAY], observer=metrics)
        assert report.listed == report.due == 0
        assert len(report.listing_errors) == 1
        assert "listed no recording folder" in report.listing_errors[0]
        assert rig.runner.app[REQUESTED_KEY] == []
        assert _states(rig) == {}  # nothing discovered, nothing marked: the backlog untouched
        assert any("listing looks broken" in p for p in metrics.not_ready(window_s=60))
        body = metrics.render().decode()
        assert metric_value(body, "archiver_listing_broken_total", pbx="pbx") == 1
        assert metric_value(body, "archiver_listings_total", pbx="pbx", result="failed") == 1
        assert metric_value(body, "archiver_backlog_recordings", pbx="pbx") == 0


async def test_a_dead_find_is_caught_by_a_name_archived_moments_ago(rig: Rig) -> None:
    (first,) = await rig.archive([FIRST_DAY])
    assert first.archived > 0 and first.listing_errors == []
    before = _states(rig)
    rig.options.empty_commands = "find"  # the firmware's find stops running
    metrics = Metrics(["pbx"])
    (second,) = await rig.archive([FIRST_DAY + timedelta(days=1)], observer=metrics)
    assert len(second.listing_errors) == 1
    assert "find did not list" in second.listing_errors[0]
    assert _states(rig) == before
    assert metrics.not_ready(window_s=60)


async def test_a_day_without_calls_is_believed(rig: Rig) -> None:
    metrics = Metrics(["pbx"])
    (report,) = await rig.archive([FIRST_DAY - timedelta(days=3)], observer=metrics)
    assert report.listing_errors == [] and report.listed == 0
    assert metrics.not_ready(window_s=60) == []
    body = metrics.render().decode()
    assert metric_value(body, "archiver_listing_broken_total", pbx="pbx") == 0


def test_what_stands_in_for_content_length(tmp_path: Path) -> None:
    source = tmp_path / "a.src"
    source.write_bytes(gsm_raw_bytes(10))
    assert shortfall(source, 10) is None
    assert shortfall(source, 11) is None  # names carry whole seconds: within the tolerance
    short = shortfall(source, 20)
    assert short is not None and not short.certain and "name says 20 s" in short.reason
    whole = wav_pcm_bytes(10)
    source.write_bytes(whole[: len(whole) // 3])
    cut = shortfall(source, 10)
    assert cut is not None and cut.certain and "claims" in cut.reason
    source.write_bytes(b"junk" * 100)
    assert shortfall(source, 10) is None  # the transcoder reports garbage, with its reason
