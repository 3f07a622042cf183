"""Peak memory and task count of `archiver backfill` on the heaviest recordings, to choose the
unit's `MemoryMax=` and `TasksMax=` (systemd/archiver.service). Not part of scripts/test.

The heaviest load: two-hour calls (the download cap allows them) as PCM WAV and raw GSM, with the
default engine (pydub decodes the whole call into memory), `transcode.workers` in parallel. The
daemon's process tree is sampled every 50 ms from /proc: the sum of VmRSS over the tree and the
sum of its threads (systemd's TasksMax= counts every thread of every process in the unit).

    .venv/bin/python bench/unit_limits.py [--workers 2] [--hours 2] [--engine pydub]

prints one line: `workers W engine E calls N x Hh peak_rss_mb M peak_tasks T wall_s S`.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import threading
import time
from datetime import date, datetime
from pathlib import Path

from archiver.lab.seaweed import SeaweedS3
from archiver.lab.simulator import SimulatorOptions, SimulatorThread

DAY = date(2016, 11, 18)
PASSWORD = "unit-limits-pbx-password"  # noqa: S105 -- a local fake PBX's password


def _tree(root: int) -> list[int]:
    """`root` and its live descendants, from /proc/*/stat."""
    children: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        children.setdefault(int(fields[1]), []).append(int(stat.parent.name))
    found, todo = [], [root]
    while todo:
        pid = todo.pop()
        found.append(pid)
        todo += children.get(pid, [])
    return found


def _status(pid: int) -> tuple[int, int]:
    """(VmRSS in bytes, threads) of `pid`, (0, 0) if it is gone."""
    try:
        lines = Path(f"/proc/{pid}/status").read_text().splitlines()
    except OSError:
        return 0, 0
    values = dict(line.split(":", 1) for line in lines if ":" in line)
    rss_kb = int(values.get("VmRSS", "0 kB").split()[0])
    return rss_kb * 1024, int(values.get("Threads", "0"))


def _sample(pid: int, peak: list[int], done: threading.Event) -> None:
    while not done.wait(0.05):
        rss = tasks = 0
        for member in _tree(pid):
            member_rss, member_tasks = _status(member)
            rss += member_rss
            tasks += member_tasks
        peak[0] = max(peak[0], rss)
        peak[1] = max(peak[1], tasks)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--hours", type=float, default=2.0)
    parser.add_argument("--engine", default="pydub", choices=["pydub", "ffmpeg"])
    args = parser.parse_args()
    duration_s = int(args.hours * 3600)
    options = SimulatorOptions(password=PASSWORD, start=DAY, per_day=0, odd_names=False, junk=False)
    with (
        tempfile.TemporaryDirectory(prefix="unit-limits-") as tmp,
        SimulatorThread(options) as sim,
        SeaweedS3(data_dir=Path(tmp) / "s3") as s3,
    ):
        calls = 0
        for fmt in ("wav_pcm", "gsm"):
            for n in range(args.workers):
                sim.corpus.add(
                    caller=f"10{n}", callee="903123320404", duration_s=duration_s, fmt=fmt,
                    started_local=datetime(2016, 11, 18, 10, calls),
                )  # fmt: skip
                calls += 1
        s3.create_bucket("limits")
        config = Path(tmp) / "archiver.toml"
        config.write_text(
            f"""
[pbx]
url = "{sim.base_url}"
username = "admin"
password_env = "LIMITS_PBX_PASSWORD"
[poll]
settle_s = 0
[transcode]
workers = {args.workers}
engine = "{args.engine}"
[s3]
bucket = "limits"
endpoint_url = "{s3.endpoint_url}"
region = "us-east-1"
addressing_style = "path"
[state]
path = "{Path(tmp) / "state" / "ledger.sqlite3"}"
""",
            encoding="utf-8",
        )
        env = {
            **os.environ,
            "LIMITS_PBX_PASSWORD": PASSWORD,
            "AWS_ACCESS_KEY_ID": s3.access_key,
            "AWS_SECRET_ACCESS_KEY": s3.secret_key,
        }
        command = [
            sys.executable, "-m", "archiver", "backfill", "--config", str(config),
            "--from", DAY.isoformat(), "--to", DAY.isoformat(), "--log-level", "error",
        ]  # fmt: skip
        started = time.monotonic()
        proc = subprocess.Popen(command, env=env)
        peak = [0, 0]
        done = threading.Event()
        sampler = threading.Thread(target=_sample, args=(proc.pid, peak, done), daemon=True)
        sampler.start()
        code = proc.wait()
        done.set()
        sampler.join()
    print(
        f"workers {args.workers} engine {args.engine} calls {calls} x {args.hours:g}h "
        f"peak_rss_mb {peak[0] / 2**20:.0f} peak_tasks {peak[1]} "
        f"wall_s {time.monotonic() - started:.0f} exit {code}",
        flush=True,
    )
    return code


if __name__ == "__main__":
    raise SystemExit(main())
