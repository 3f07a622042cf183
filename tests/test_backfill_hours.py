"""Backfill hours (`[backfill] pause_during`) and `archiver backfill --dry-run`."""

from __future__ import annotations

import asyncio
import io
import os
import time
from collections.abc import AsyncIterator
from datetime import date, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
import structlog
from support import Rig, daemon_toml, run_archiver, start_rig

from archiver.config import ConfigError, PauseWindow, S3Config, parse_window
from archiver.lab.seaweed import SeaweedS3
from archiver.lab.simulator import SimulatorOptions, SimulatorThread
from archiver.observe import NullObserver
from archiver.pipeline.hours import paused_until
from archiver.pipeline.plan import DayPlan, dry_run, estimate, estimated_bytes, paused_share

IST = ZoneInfo("Europe/Istanbul")
FIRST_DAY = date(2016, 11, 17)
MONDAY = datetime(2026, 11, 30, tzinfo=IST)


def _at(day: datetime, hh: int, mm: int) -> datetime:
    return day.replace(hour=hh, minute=mm)


def test_windows_parse_with_and_without_weekdays() -> None:
    assert parse_window("08:00-19:00").days == frozenset(range(7))
    window = parse_window("Mon-Fri 08:00-19:00")
    assert window.days == frozenset(range(5))
    assert (window.start.hour, window.end.hour) == (8, 19)
    assert parse_window("Sat,Sun 10:00-14:00").days == frozenset({5, 6})
    assert parse_window("Fri-Mon 22:00-06:00").days == frozenset({4, 5, 6, 0})


@pytest.mark.parametrize("bad", ["8-19", "08:00", "Mon-Xyz 08:00-19:00", "25:00-26:00", ""])
def test_a_bad_window_is_a_config_error_with_its_path(bad: str) -> None:
    from archiver.config import parse_config

    document = {
        "pbx": {"url": "https://pbx.example:9999", "username": "u", "password": "pw-pw-pw-pw"},
        "s3": {"bucket": "calls"},
        "backfill": {"pause_during": [bad]},
    }
    with pytest.raises(ConfigError) as caught:
        parse_config(document, "t.toml")
    assert "t.toml: at 'backfill.pause_during'" in str(caught.value)


def test_paused_until_the_end_of_the_window() -> None:
    office = [parse_window("Mon-Fri 08:00-19:00")]
    assert paused_until(office, _at(MONDAY, 7, 59)) is None
    assert paused_until(office, _at(MONDAY, 8, 0)) == _at(MONDAY, 19, 0)
    assert paused_until(office, _at(MONDAY, 19, 0)) is None
    saturday = MONDAY + timedelta(days=5)
    assert paused_until(office, _at(saturday, 12, 0)) is None


def test_a_window_past_midnight_and_back_to_back_windows() -> None:
    night = [parse_window("Sun 22:00-06:00")]
    sunday = MONDAY + timedelta(days=6)
    assert paused_until(night, _at(sunday, 23, 0)) == _at(sunday + timedelta(days=1), 6, 0)
    # Monday 05:00 belongs to Sunday's window (a window's weekdays are those it starts on).
    assert paused_until(night, _at(MONDAY + timedelta(days=7), 5, 0)) is not None
    assert paused_until(night, _at(MONDAY + timedelta(days=1), 5, 0)) is None  # a Tuesday
    chained = [parse_window("08:00-12:00"), parse_window("12:00-19:00")]
    assert paused_until(chained, _at(MONDAY, 9, 0)) == _at(MONDAY, 19, 0)


def test_the_share_of_the_week_paused() -> None:
    assert paused_share([]) == 0
    assert paused_share([parse_window("Mon-Fri 08:00-19:00")]) == pytest.approx(55 / 168)
    assert paused_share([parse_window("00:00-00:00")]) == 1


@pytest.fixture
async def rig(
    tmp_path: Path, s3_config: S3Config, s3_env: dict[str, str], seaweed: SeaweedS3
) -> AsyncIterator[Rig]:
    options = SimulatorOptions(
        username="admin", password="Hours-Secret-77", seed=12, start=FIRST_DAY, days=1,
        per_day=3, max_duration_s=20, odd_names=False, junk=False,
    )  # fmt: skip
    rig = await start_rig(
        options,
        s3_config,
        seaweed,
        tmp_path,
        {"backfill": {"pause_during": ["Mon-Fri 06:00-08:00"]}},
    )
    try:
        yield rig
    finally:
        await rig.runner.cleanup()


class _Pauses(NullObserver):
    def __init__(self) -> None:
        self.seen: list[tuple[str, datetime]] = []

    def paused(self, pbx: str, until: datetime) -> None:
        self.seen.append((pbx, until))


def _clock_from(local: datetime) -> object:
    """A clock that reads `local` now and runs at the real pace."""
    started = time.monotonic()
    return lambda: local + timedelta(seconds=time.monotonic() - started)


async def test_a_backfill_waits_out_the_window_and_says_until_when(rig: Rig) -> None:
    paused = _Pauses()
    archiver = rig.archiver(
        clock=_clock_from(MONDAY.replace(hour=7, minute=59, second=58)), observer=paused
    )
    started = time.monotonic()
    try:
        with structlog.testing.capture_logs() as logs:
            report = await archiver.archive_days({"pbx": [FIRST_DAY]}, pausable=True)
    finally:
        for client in archiver.clients.values():
            await client.close()
        archiver.close()
        archiver.ledger.close()
    assert time.monotonic() - started >= 1.5  # 07:59:58 -> 08:00:00
    assert paused.seen == [("pbx", MONDAY.replace(hour=8))]
    events = [e for e in logs if e["event"] == "backfill_paused"]
    assert [e["until"] for e in events] == ["2026-11-30T08:00:00+03:00"]
    assert report.archived == report.due > 0


async def test_the_live_poll_never_waits(rig: Rig) -> None:
    archiver = rig.archiver(clock=_clock_from(MONDAY.replace(hour=7)))
    try:
        with structlog.testing.capture_logs() as logs:
            report = await archiver.archive_days({"pbx": [FIRST_DAY]})
    finally:
        for client in archiver.clients.values():
            await client.close()
        archiver.close()
        archiver.ledger.close()
    assert not [e for e in logs if e["event"] == "backfill_paused"]
    assert report.archived == report.due > 0


async def test_dry_run_prints_days_totals_and_an_estimate(rig: Rig) -> None:
    cfg = rig.cfg.model_copy(
        update={"pbx": [rig.cfg.pbx[0].model_copy(update={"max_download_kbps": 64.0})]}
    )
    out = io.StringIO()
    plan = {"pbx": [FIRST_DAY, FIRST_DAY + timedelta(days=1)]}
    # In a thread with its own loop (as the command runs it); this loop serves the simulator.
    code = await asyncio.to_thread(dry_run, cfg, plan, out=out)
    text = out.getvalue()
    print(text)
    valid = [r for r in rig.options.build_corpus().recordings() if r.valid]
    assert code == 0
    first, second, total = text.splitlines()[:3]
    assert first.startswith("2016-11-17 pbx") and f"{len(valid)} recordings" in first
    assert second.startswith("2016-11-18 pbx") and " 0 recordings" in second
    expected_bytes = sum(estimated_bytes(r.name.rsplit(".", 1)[1], r.duration_s) for r in valid)
    assert f"{expected_bytes / 1e6:.1f} MB" in total
    assert "downloading:" in text and "at the cap (pbx 64 kbit/s)" in text
    assert "pause_during: 6 % of the week paused" in text  # Mon-Fri 06:00-08:00 = 10 of 168 h
    assert "estimate:" in text
    assert not rig.objects()  # nothing stored


def test_the_estimate_is_the_slowest_bound_stretched_by_the_pauses() -> None:
    days = [DayPlan("a", FIRST_DAY, 10, 1_000_000, 3600.0), DayPlan("b", FIRST_DAY, 1, 0, 0.0)]
    windows: list[PauseWindow] = [parse_window("00:00-12:00")]
    result = estimate(
        days, audio_s_per_cpu_s=100, workers=2, kbps_by_pbx={"a": 80.0, "b": None},
        windows=windows,
    )  # fmt: skip
    assert result.transcode_s == 18.0
    assert result.download_s == 100.0  # 1 MB at 10 kB/s
    assert result.total_s == pytest.approx(200.0)  # half of each day paused


def test_backfill_dry_run_command(tmp_path: Path, seaweed: SeaweedS3, bucket: str) -> None:
    options = SimulatorOptions(
        username="admin", password="Dry-Run-Secret-5", seed=13, start=FIRST_DAY, days=2,
        per_day=4, odd_names=False, junk=False,
    )  # fmt: skip
    with SimulatorThread(options) as sim:
        config = tmp_path / "archiver.toml"
        config.write_text(
            daemon_toml(sim.base_url, seaweed, bucket, tmp_path, pbx={"max_download_kbps": 500})
        )
        env = {**os.environ, "TEST_PBX_PASSWORD": options.password}
        done = run_archiver(
            "backfill", "--dry-run", "--config", str(config),
            "--from", "2016-11-17", "--to", "2016-11-18", env=env,
        )  # fmt: skip
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert [line.split()[0] for line in lines[:3]] == ["2016-11-17", "2016-11-18", "total"]
    assert " 8 recordings" in lines[2]
    assert lines[-1].startswith("estimate: ")
    assert sim.requested == []  # listed, never downloaded
    assert options.password not in done.stdout + done.stderr
