"""`archiver backfill --dry-run`: what a backfill would archive, and about how long it would take.

Nothing is downloaded, transcoded, stored or written to the ledger: each day goes through the
backfill's own `list_day` (the same `find`, retries, empty-listing check, parsing and ledger
check), so the count is the backfill's. The
listing gives names, not sizes, so the source bytes are estimated from each name's duration and
its format's byte rate (`_BYTES_PER_S`; a `.wav` counts as 16-bit PCM, the larger of the two
things it can hold, so the estimate errs high). The time estimate takes the slowest of:

- transcoding: the audio's length over this host's rate, measured here by transcoding 60 s of
  PCM WAV once (the CPU ffmpeg and the worker thread spent) times `transcode.workers`;
- downloading: the source bytes over `pbx.max_download_kbps` per PBX (PBXs one after another,
  as the backfill runs them); without a cap the network is not estimated;

stretched by `[backfill] pause_during` (the share of a week inside the windows).
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import resource
import struct
import sys
import tempfile
import time
import wave
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import TextIO
from zoneinfo import ZoneInfo

from archiver.config import Config, PauseWindow
from archiver.credentials import pbx_password
from archiver.exits import EXIT_OK, EXIT_SOME_FAILED, EXIT_UNREACHABLE
from archiver.observe import NullObserver
from archiver.pbx import PbxClient
from archiver.pipeline.cpus import usable_cpus
from archiver.pipeline.days import DueRules, list_day
from archiver.pipeline.hours import paused_until
from archiver.pipeline.retries import Retrier, install_retry_log
from archiver.pipeline.transcode import find_ffmpeg, transcode_to_mp3
from archiver.state import State, open_state

__all__ = [
    "DayPlan",
    "Estimate",
    "dry_run",
    "estimate",
    "list_plan",
    "measure_transcode_rate",
    "paused_share",
]

# Bytes per second of audio by extension (pbx-api.md, "Audio facts").
_BYTES_PER_S = {"gsm": 1650, "wav": 16000, "wav49": 1625}
_CALIBRATION_S = 60
_WEEK_MINUTES = 7 * 24 * 60


@dataclass(frozen=True)
class DayPlan:
    """One day of one PBX: what a backfill would archive (`error`: the listing failed)."""

    pbx: str
    day: date
    recordings: int = 0
    source_bytes: int = 0
    audio_s: float = 0.0
    error: str | None = None


@dataclass(frozen=True)
class Estimate:
    """How long the plan takes, and why: each bound in seconds (None: not estimated)."""

    transcode_s: float
    download_s: float | None
    paused_share: float
    total_s: float
    audio_s_per_cpu_s: float
    workers: int


def estimated_bytes(extension: str, duration_s: float) -> int:
    """Source bytes of a recording from its name: its format's byte rate times its length."""
    return int(_BYTES_PER_S.get(extension.lower(), _BYTES_PER_S["wav"]) * duration_s)


async def list_plan(
    cfg: Config,
    clients: Mapping[str, PbxClient],
    state: State,
    plan: Mapping[str, Sequence[date]],
    now: datetime,
) -> list[DayPlan]:
    """List every day of `plan` and count what a backfill would archive: each day through
    `list_day`, as the backfill lists it (its retries, its check of an empty listing, its
    settle time and attempt cap), nothing written. A failed listing is a `DayPlan` with its
    `error`, never a zero."""
    retry = Retrier(cfg.retry, NullObserver(), asyncio.Event())
    rules = DueRules(cfg.poll.settle_s, cfg.retry.max_recording_attempts)
    days: list[DayPlan] = []
    for pbx_name, pbx_days in plan.items():
        for day in pbx_days:
            listing = await list_day(
                clients[pbx_name], day, ledger=state.ledger, state=state.aio, retry=retry,
                rules=rules, clock=lambda: now,
            )  # fmt: skip
            if listing.error is not None:
                days.append(DayPlan(pbx_name, day, error=listing.error))
                continue
            size = sum(estimated_bytes(rec.extension, rec.duration_s) for rec in listing.due)
            audio_s = float(sum(rec.duration_s for rec in listing.due))
            days.append(DayPlan(pbx_name, day, len(listing.due), size, audio_s))
    return days


def measure_transcode_rate(ffmpeg: str, bitrate: str, lame_quality: int | None = None) -> float:
    """Seconds of audio one worker transcodes per CPU second on this host: 60 s of PCM WAV (a
    tone) through one ffmpeg, counting ffmpeg's CPU and this thread's (the MP3 check, the
    hash). Raise what `transcode_to_mp3` raises if ffmpeg cannot run."""
    with tempfile.TemporaryDirectory(prefix="archiver-calibrate-") as folder:
        source = Path(folder) / "tone.wav"
        _write_tone(source, _CALIBRATION_S)
        children0 = _children_cpu_s()
        thread0 = time.thread_time()
        transcode_to_mp3(
            source, Path(folder) / "tone.mp3", ffmpeg=ffmpeg, bitrate=bitrate, tags={},
            engine="ffmpeg", lame_quality=lame_quality,
        )  # fmt: skip
        cpu_s = _children_cpu_s() - children0 + time.thread_time() - thread0
    return _CALIBRATION_S / max(cpu_s, 1e-3)


def paused_share(windows: Sequence[PauseWindow]) -> float:
    """The share of a week (minute by minute, from a Monday) inside `windows`."""
    if not windows:
        return 0.0
    monday = datetime(2024, 1, 1, tzinfo=ZoneInfo("UTC"))  # any Monday; no DST in UTC
    paused = 0
    for minute in range(_WEEK_MINUTES):
        if paused_until(windows, monday + timedelta(minutes=minute)) is not None:
            paused += 1
    return paused / _WEEK_MINUTES


def estimate(
    days: Sequence[DayPlan],
    *,
    audio_s_per_cpu_s: float,
    workers: int,
    kbps_by_pbx: Mapping[str, float | None],
    windows: Sequence[PauseWindow],
    share: Callable[[Sequence[PauseWindow]], float] = paused_share,
) -> Estimate:
    """The time the plan takes: the slower of transcoding and capped downloading, stretched by
    the pause windows (`total_s` is infinite if they cover the whole week)."""
    audio_s = sum(day.audio_s for day in days)
    transcode_s = audio_s / (audio_s_per_cpu_s * workers)
    download_s: float | None = None
    for pbx, kbps in kbps_by_pbx.items():
        if kbps is not None:
            size = sum(day.source_bytes for day in days if day.pbx == pbx)
            download_s = (download_s or 0.0) + size / (kbps * 1000 / 8)
    paused = share(windows)
    work_s = max(transcode_s, download_s or 0.0)
    total_s = work_s / (1 - paused) if paused < 1 else math.inf
    return Estimate(transcode_s, download_s, paused, total_s, audio_s_per_cpu_s, workers)


def _write_tone(path: Path, seconds: int) -> None:
    """8 kHz 16-bit mono PCM: a 440 Hz tone whose loudness wobbles (the estimate's stand-in
    for speech; the corpus in bench/ holds the real mix)."""
    rate = 8000
    frames = bytearray()
    for n in range(rate * seconds):
        level = 8000 * (1 + math.sin(2 * math.pi * n / rate / 3))
        frames += struct.pack("<h", int(level * math.sin(2 * math.pi * 440 * n / rate)))
    with wave.open(str(path), "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(rate)
        out.writeframes(bytes(frames))


def _children_cpu_s() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def dry_run(
    cfg: Config,
    plan: Mapping[str, Sequence[date]],
    *,
    out: TextIO = sys.stdout,
    clock: Callable[[], datetime] = lambda: datetime.now().astimezone(),
) -> int:
    """`archiver backfill --dry-run`: print the plan per day and in total, and the estimate.
    Return the exit code: 0, or 2 if every listing failed, 3 if some did. `clock` says when
    "now" is (what is settled)."""
    ffmpeg = find_ffmpeg(cfg.transcode.ffmpeg)
    days = asyncio.run(_list_with_clients(cfg, plan, clock()))
    workers = cfg.transcode.workers or usable_cpus()
    rate = measure_transcode_rate(ffmpeg, cfg.transcode.bitrate, cfg.transcode.lame_quality)
    kbps = {name: cfg.pbx_named(name).max_download_kbps for name in plan}
    result = estimate(
        [d for d in days if d.error is None],
        audio_s_per_cpu_s=rate,
        workers=workers,
        kbps_by_pbx=kbps,
        windows=cfg.backfill.windows,
    )
    _print_plan(days, result, kbps, out)
    failed = [d for d in days if d.error is not None]
    if failed and len(failed) == len(days):
        return EXIT_UNREACHABLE
    return EXIT_SOME_FAILED if failed else EXIT_OK


async def _list_with_clients(
    cfg: Config, plan: Mapping[str, Sequence[date]], now: datetime
) -> list[DayPlan]:
    install_retry_log()
    clients = {name: PbxClient(cfg.pbx_named(name), pbx_password(cfg.pbx_named(name)))
               for name in plan}  # fmt: skip
    try:
        with contextlib.closing(open_state(cfg)) as state:
            return await list_plan(cfg, clients, state, plan, now)
    finally:
        for client in clients.values():
            await client.close()


def _print_plan(
    days: Sequence[DayPlan], result: Estimate, kbps: Mapping[str, float | None], out: TextIO
) -> None:
    def row(label: str, recordings: int, size: int, audio_s: float) -> str:
        return (
            f"{label:<24} {recordings:>8} recordings {size / 1e6:>10.1f} MB"
            f" {audio_s / 3600:>9.2f} audio h"
        )

    for day in days:
        label = f"{day.day.isoformat()} {day.pbx}"
        if day.error is not None:
            print(f"{label:<24} listing failed: {day.error}", file=out)
        else:
            print(row(label, day.recordings, day.source_bytes, day.audio_s), file=out)
    good = [d for d in days if d.error is None]
    total = row(
        "total",
        sum(d.recordings for d in good),
        sum(d.source_bytes for d in good),
        sum(d.audio_s for d in good),
    )
    print(total + " (source bytes estimated from durations)", file=out)
    print(
        f"transcoding: {_duration(result.transcode_s)} at {result.audio_s_per_cpu_s:.0f} audio s"
        f" per CPU s (measured on this host) x {result.workers} worker(s)",
        file=out,
    )
    caps = ", ".join(f"{name} {value:g} kbit/s" for name, value in kbps.items() if value)
    if result.download_s is None:
        print("downloading: no max_download_kbps cap: not estimated", file=out)
    else:
        print(f"downloading: {_duration(result.download_s)} at the cap ({caps})", file=out)
    if result.paused_share:
        print(f"pause_during: {100 * result.paused_share:.0f} % of the week paused", file=out)
    print(f"estimate: {_duration(result.total_s)}", file=out)


def _duration(seconds: float) -> str:
    if math.isinf(seconds):
        return "never (pause_during covers the whole week)"
    hours, rest = divmod(int(seconds), 3600)
    return f"{hours} h {rest // 60:02d} min" if hours else f"{rest // 60} min {rest % 60:02d} s"
