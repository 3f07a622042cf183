"""Measure `pbx.max_download_kbps`: the rate a capped `archiver backfill` pulls from the PBX.

Run: .venv/bin/python bench/bandwidth.py [--kbps 2000] [--window-s 30] [--warmup-s 5]

The PBX simulator runs in its own process; what it sends is read from the kernel, as the PBX's
uplink would see it: `bytes_acked` of each of its TCP connections (`ss -ti`, sampled every
0.2 s): bodies of listings and downloads and HTTP headers that archiver's side acknowledged,
which TCP's flow control holds to what archiver reads plus its receive window. A real
`archiver backfill` runs against it with the cap, into a local SeaweedFS. After `--warmup-s`,
the bytes acknowledged during `--window-s` are divided by the window; then the backfill is
stopped (SIGTERM).
Prints `bandwidth_kbps X cap Y ratio Z` with the load average. Goal: |ratio - 1| <= 0.10.
"""

from __future__ import annotations

import argparse
import itertools
import os
import re
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from run import FIRST_DAY, PBX_PASSWORD, PBX_USER, PYTHON, simulator

from archiver.lab.seaweed import SeaweedS3

SAMPLE_EVERY_S = 0.2


def acked_by_connection(port: int) -> dict[str, int]:
    """bytes_acked of every established TCP connection from local `port`, by peer address."""
    out = subprocess.run(
        ["ss", "-tinH", "state", "established", f"( sport = :{port} )"],
        capture_output=True, text=True, check=True,
    ).stdout  # fmt: skip
    acked: dict[str, int] = {}
    peer = None
    for line in out.splitlines():
        if not line[:1].isspace():
            peer = line.split()[-1]  # Recv-Q Send-Q local peer
        elif peer is not None and (found := re.search(r"bytes_acked:(\d+)", line)):
            acked[peer] = int(found[1])
    return acked


class Meter:
    """Bytes the PBX's connections delivered since `start()`, from `ss` samples: a connection
    that appears later counts from zero, one that closes keeps its last sample."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.base: dict[str, int] = {}
        self.last: dict[str, int] = {}

    def start(self) -> None:
        self.base = acked_by_connection(self.port)
        self.last = dict(self.base)

    def sample(self) -> int:
        self.last.update(acked_by_connection(self.port))
        return sum(acked - self.base.get(peer, 0) for peer, acked in self.last.items())


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--kbps", type=float, default=2000.0)
    parser.add_argument("--window-s", type=float, default=30.0)
    parser.add_argument("--warmup-s", type=float, default=5.0)
    parser.add_argument("--per-day", type=int, default=80, help="recordings the PBX has")
    args = parser.parse_args()
    print(f"bandwidth: load average {_load()} at the start", flush=True)
    with (
        tempfile.TemporaryDirectory(prefix="archiver-bandwidth-") as folder,
        simulator(1, args.per_day) as (url, _),
        SeaweedS3(data_dir=Path(folder) / "s3") as s3,
    ):
        work = Path(folder)
        s3.create_bucket("bandwidth")
        config = work / "archiver.toml"
        config.write_text(
            f"""
[[pbx]]
name = "bench"
url = "{url}"
username = "{PBX_USER}"
password_env = "BENCH_PBX_PASSWORD"
max_download_kbps = {args.kbps}

[poll]
settle_s = 0

[s3]
bucket = "bandwidth"
endpoint_url = "{s3.endpoint_url}"
region = "us-east-1"
addressing_style = "path"

[state]
path = "{work / "ledger.sqlite3"}"
""",
            encoding="utf-8",
        )
        env = {
            **os.environ,
            "BENCH_PBX_PASSWORD": PBX_PASSWORD,
            "AWS_ACCESS_KEY_ID": s3.access_key,
            "AWS_SECRET_ACCESS_KEY": s3.secret_key,
        }
        command = [
            PYTHON, "-m", "archiver", "backfill", "--config", str(config),
            "--from", FIRST_DAY.isoformat(), "--to", FIRST_DAY.isoformat(),
            "--log-level", "error",
        ]  # fmt: skip
        backfill = subprocess.Popen(command, env=env, stdin=subprocess.DEVNULL)
        try:
            time.sleep(args.warmup_s)
            if backfill.poll() is not None:
                raise RuntimeError("the backfill ended before the window: raise --per-day")
            meter = Meter(int(url.rsplit(":", 1)[1].rstrip("/")))
            meter.start()
            started = time.monotonic()
            series = [0]
            while (elapsed := time.monotonic() - started) < args.window_s:
                time.sleep(min(SAMPLE_EVERY_S, args.window_s - elapsed))
                delivered = meter.sample()
                if elapsed // 5 >= len(series):
                    series.append(delivered)
            took_s = time.monotonic() - started
            total = meter.sample()
            if backfill.poll() is not None:
                raise RuntimeError("the backfill ended inside the window: raise --per-day")
        finally:
            backfill.send_signal(signal.SIGTERM)
            backfill.wait(timeout=120)
    kbps = total * 8 / took_s / 1000
    per_5s = [(b - a) * 8 / 5 / 1000 for a, b in itertools.pairwise([*series, total])]
    print("bandwidth: kbit/s per 5 s: " + " ".join(f"{x:.0f}" for x in per_5s))
    print(
        f"bandwidth_kbps {kbps:.0f} cap {args.kbps:g} ratio {kbps / args.kbps:.3f} "
        f"over {took_s:.1f} s after {args.warmup_s:g} s of warm-up (load average {_load()})"
    )
    return 0 if abs(kbps / args.kbps - 1) <= 0.10 else 1


def _load() -> str:
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


if __name__ == "__main__":
    sys.exit(main())
