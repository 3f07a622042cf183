"""The CPU budget per recording of an archiver run, as scripts/bench prints it.

The numbers come from archiver/cpu_budget.py (ARCHIVER_CPU_BUDGET, set by bench/run.py for every
archiver run): CPU seconds by stage inside the daemon's process, the CPU of its ffmpeg children,
how many processes it started and how many S3 requests it made. `ffmpeg_start_ms` measures what
starting one ffmpeg costs on this machine (a 20 ms WAV encoded to MP3, the median of N runs), so
the budget can say how much of the transcode is process start.
"""

from __future__ import annotations

import os
import statistics
import subprocess
import wave
from collections.abc import Sequence
from pathlib import Path
from typing import Any

__all__ = ["budget_lines", "ffmpeg_start_ms"]


def ffmpeg_start_ms(ffmpeg: str, work: Path, cpus: str | None, runs: int = 15) -> float:
    """Median CPU ms (user + system, from wait4) of one ffmpeg encoding 20 ms of 8 kHz audio to
    a 32 kb/s MP3: nearly all of it is the process starting (libraries, codecs, filters)."""
    tiny = work / "start-probe.wav"
    with wave.open(str(tiny), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(8000)
        w.writeframes(b"\0\0" * 160)
    command = [
        ffmpeg, "-nostdin", "-hide_banner", "-loglevel", "error", "-i", str(tiny),
        "-b:a", "32k", "-f", "mp3", "-y", os.devnull,
    ]  # fmt: skip
    if cpus is not None:
        command = ["taskset", "-c", cpus, *command]
    spent = []
    for _ in range(runs):
        proc = subprocess.Popen(command, stdin=subprocess.DEVNULL)
        _, status, usage = os.wait4(proc.pid, 0)
        if os.waitstatus_to_exitcode(status) != 0:
            raise RuntimeError(f"ffmpeg start probe: exit {status}")
        spent.append(1000 * (usage.ru_utime + usage.ru_stime))
    tiny.unlink()
    # taskset itself is an exec in front: measured apart and taken out.
    return statistics.median(spent) - (_taskset_ms(cpus) if cpus is not None else 0.0)


def _taskset_ms(cpus: str) -> float:
    spent = []
    for _ in range(5):
        proc = subprocess.Popen(["taskset", "-c", cpus, "true"])
        _, _, usage = os.wait4(proc.pid, 0)
        spent.append(1000 * (usage.ru_utime + usage.ru_stime))
    return statistics.median(spent)


def budget_lines(
    name: str,
    budget: dict[str, Any],
    recordings: int,
    tree_cpu_s: float,
    load: str,
    start_ms: float | None,
) -> Sequence[str]:
    """The budget of one run, in CPU ms per recording, one line per stage."""
    per = 1000.0 / recordings
    stages: dict[str, float] = budget["stages_cpu_s"]
    counts: dict[str, int] = budget["counts"]
    children_ms = budget["children_cpu_s"] * per
    ffmpeg_starts = sum(n for what, n in counts.items() if what.startswith("process:ffmpeg"))
    starts_per = ffmpeg_starts / recordings
    heads, puts = (
        counts.get("s3:HeadObject", 0) / recordings,
        counts.get("s3:PutObject", 0) / recordings,
    )
    out = [
        f"cpu_budget {name}: CPU ms per recording ({recordings} recordings; "
        f"load average {load} when it ended)"
    ]
    for stage, cpu_s in stages.items():
        ms = cpu_s * per
        if stage == "transcode":
            start = (
                f", of which starting them ~{starts_per * start_ms:.1f}"
                f" ({start_ms:.1f} ms per start)"
                if start_ms is not None
                else ""
            )
            out.append(
                f"  {'transcode':<13} {ms + children_ms:8.1f}  (daemon threads {ms:.1f}, ffmpeg "
                f"children {children_ms:.1f}: {starts_per:.2f} ffmpeg per recording{start})"
            )
        elif stage == "upload":
            out.append(
                f"  {'upload':<13} {ms:8.1f}  ({heads:.2f} HEAD + {puts:.2f} PUT per recording;"
                " boto3 signing, the HEADs; payload hashing is under hashing)"
            )
        elif stage == "other":
            out.append(
                f"  {'other':<13} {ms:8.1f}  (event loop outside a recording's stages:"
                " listing, claims, leases, scheduling)"
            )
        else:
            out.append(f"  {stage:<13} {ms:8.1f}")
    unattributed = budget["unattributed_cpu_s"] * per
    total = (budget["process_cpu_s"] + budget["children_cpu_s"]) * per
    out.append(f"  {'unattributed':<13} {unattributed:8.1f}  (interpreter start, imports, exit)")
    out.append(
        f"  {'total':<13} {total:8.1f}  (daemon {budget['process_cpu_s'] * per:.1f} + children "
        f"{children_ms:.1f}; the whole tree by wait4: {tree_cpu_s * per:.1f})"
    )
    return out
