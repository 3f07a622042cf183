"""Dry run equals the run: `backfill --dry-run` and the backfill after it agree, day by day, on
a PBX that lists invalid names among its recordings (today's not all settled yet) and whose empty
listing of the day before cannot be believed (a recording archived a short while ago is no longer
found by its name). Both go through `days.list_day`; this pins that they cannot drift apart."""

from __future__ import annotations

import asyncio
import io
from collections.abc import AsyncIterator
from datetime import datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from support import Rig, start_rig

from archiver.config import S3Config
from archiver.lab.seaweed import SeaweedS3
from archiver.lab.simulator import SimulatorOptions
from archiver.names import parse_path
from archiver.pipeline.plan import dry_run
from archiver.state import catalogue_entry
from archiver.state.ledger import Ledger

IST = ZoneInfo("Europe/Istanbul")
# Archived "a short while ago", and no longer listed by the PBX: an empty listing is not believed.
GONE = "/var/spool/asterisk/monitor/recording/trunk1/20000101-000000-100-200-946674000.1-5.wav"


@pytest.fixture
async def rig(
    s3_config: S3Config, seaweed: SeaweedS3, tmp_path: Path, s3_env: dict[str, str]
) -> AsyncIterator[Rig]:
    yesterday = datetime.now(IST).date() - timedelta(days=1)
    options = SimulatorOptions(
        username="admin", password="Dry-Equal-Pw-3", seed=21, start=yesterday, days=2, per_day=12,
        odd_names=True, junk=True, timezone="Europe/Istanbul",
    )  # fmt: skip
    made = await start_rig(options, s3_config, seaweed, tmp_path)
    try:
        yield made
    finally:
        await made.runner.cleanup()


async def test_backfill_dry_run_and_the_backfill_agree(rig: Rig) -> None:
    now = datetime.now(IST)
    today, yesterday = now.date(), now.date() - timedelta(days=1)
    empty_day = yesterday - timedelta(days=1)  # the PBX lists nothing for it
    ledger = Ledger.open(rig.cfg.state.path)
    gone = parse_path("pbx", GONE, IST)
    ledger.discover([gone])
    ledger.mark_verified(catalogue_entry(gone, object_key="k/gone.mp3", size_bytes=1, metadata={}))
    ledger.close()
    plan = {"pbx": [empty_day, yesterday, today]}

    out = io.StringIO()
    # In a thread with its own loop (as the command runs it); this loop serves the simulator.
    code = await asyncio.to_thread(dry_run, rig.cfg, plan, out=out, clock=lambda: now)
    lines = out.getvalue().splitlines()
    report = (await rig.archive(plan["pbx"], clock=lambda: now))[0]

    corpus = rig.options.build_corpus().recordings()
    assert any(not r.valid for r in corpus)  # the PBX does list names that are not recordings
    assert report.invalid > 0 and report.unsettled > 0, report  # ...and calls not settled yet
    broken, *days = lines[:3]
    # The empty day: its listing is not believed, by either, for the same reason.
    assert broken.startswith(f"{empty_day.isoformat()} pbx") and "listing failed:" in broken
    assert len(report.listing_errors) == 1
    assert report.listing_errors[0] in broken and "did not list" in report.listing_errors[0]
    # Yesterday and today: the dry run's counts are what the backfill found due and archived.
    assert [line.split()[0] for line in days] == [yesterday.isoformat(), today.isoformat()]
    counted = sum(int(line.split()[2]) for line in days)
    assert counted == report.due == report.archived > 0, (days, report)
    assert code == 3  # some listing failed (the dry run says so, as the backfill does)
