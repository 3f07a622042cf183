"""The demo behind `scripts/demo`: the whole job on an embedded default, all on 127.0.0.1.

Starts the PBX simulator and a local S3 server (SeaweedFS), runs `archiver backfill` over two
simulated days exactly as an administrator would (a subprocess with a TOML file), prints what
landed in the bucket, and stops both. State lives in ./demo-data, so a second run finds every
recording already archived and uploads nothing.

With `--web`, it then serves the archive (`archiver web`) on 127.0.0.1 with a demo user whose
password it prints, until Ctrl-C.
"""

from __future__ import annotations

import argparse
import os
import re
import secrets
import signal
import subprocess
import sys
import time
from datetime import UTC, date, datetime
from pathlib import Path

from archiver.lab.seaweed import SeaweedS3
from archiver.lab.simulator import SimulatorOptions, SimulatorThread
from archiver.web import set_password

BUCKET = "demo-recordings"
# The simulator's password; handed to archiver by environment, never written into the TOML.
PASSWORD = "demo-pbx-password"  # noqa: S105 -- a demo credential of a local fake PBX
FIRST_DAY = date(2016, 11, 17)
DEMO_USER = "demo"
DAYS = 2


def _config(sim_url: str, s3_url: str, data: Path, web_port: int) -> str:
    return f"""
[[pbx]]
name = "demo"
url = "{sim_url}"
username = "admin"
password_env = "DEMO_PBX_PASSWORD"

[poll]
settle_s = 0

[s3]
bucket = "{BUCKET}"
endpoint_url = "{s3_url}"
region = "us-east-1"
addressing_style = "path"

[state]
path = "{data / "ledger.sqlite3"}"

[web]
listen = "127.0.0.1:{web_port}"
users_file = "{data / "web-users"}"
admins = ["{DEMO_USER}"]
"""


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--data", type=Path, default=Path("demo-data"))
    parser.add_argument("--per-day", type=int, default=12)
    parser.add_argument("--web", action="store_true", help="then serve the archive until Ctrl-C")
    parser.add_argument("--web-port", type=int, default=8780)
    args = parser.parse_args(argv)
    # SIGTERM unwinds like Ctrl-C, so the simulator and SeaweedFS are stopped on the way out
    # (killed by default, the demo left its SeaweedFS running). Ctrl-C is set too: a process
    # started with SIGINT ignored (a pytest-xdist worker's child) inherits that, and Python then
    # installs no KeyboardInterrupt; the demo waited forever for a Ctrl-C it could not see.
    signal.signal(signal.SIGTERM, _interrupt)
    signal.signal(signal.SIGINT, _interrupt)
    data: Path = args.data.resolve()
    data.mkdir(parents=True, exist_ok=True)
    sim_options = SimulatorOptions(
        username="admin", password=PASSWORD, seed=7, start=FIRST_DAY, days=DAYS,
        per_day=args.per_day,
    )  # fmt: skip
    with SimulatorThread(sim_options) as sim, SeaweedS3(data_dir=data / "s3") as s3:
        s3.create_bucket(BUCKET)
        config = data / "archiver.toml"
        config.write_text(
            _config(sim.base_url, s3.endpoint_url, data, args.web_port), encoding="utf-8"
        )
        expected = sum(1 for rec in sim.corpus.recordings() if rec.valid)
        print(f"demo: PBX simulator at {sim.base_url} with {expected} valid recordings over "
              f"{DAYS} days; S3 (SeaweedFS) at {s3.endpoint_url}", flush=True)  # fmt: skip
        env = {
            **os.environ,
            "DEMO_PBX_PASSWORD": PASSWORD,
            "AWS_ACCESS_KEY_ID": s3.access_key,
            "AWS_SECRET_ACCESS_KEY": s3.secret_key,
        }
        last_day = date.fromordinal(FIRST_DAY.toordinal() + DAYS - 1)
        command = [
            sys.executable, "-m", "archiver", "backfill", "--config", str(config),
            "--from", FIRST_DAY.isoformat(), "--to", last_day.isoformat(), "--log-level", "warning",
        ]  # fmt: skip
        run_started = datetime.now(UTC).replace(microsecond=0)
        started = time.monotonic()
        result = subprocess.run(command, env=env, check=False)
        wall_s = time.monotonic() - started
        keys, uploaded = _print_bucket(s3, since=run_started)
        _summary(result.returncode, keys, expected, uploaded, wall_s)
        ok = result.returncode == 0 and len(keys) == expected
        if args.web and ok:
            return _serve(config, data, env)
    return 0 if ok else 1


def _serve(config: Path, data: Path, env: dict[str, str]) -> int:
    """`archiver web` over the demo's archive with a fresh demo password, until Ctrl-C."""
    password = secrets.token_urlsafe(12)
    set_password(data / "web-users", DEMO_USER, password, cost=10)
    command = [sys.executable, "-m", "archiver", "web", "--config", str(config)]
    process = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, text=True)
    output = process.stdout if process.stdout is not None else iter(())
    for line in output:
        found = re.search(r'"?port"?[=:] ?([0-9]+)', line) if "web_listening" in line else None
        if found is not None:
            port = found.group(1)
            print(f"demo: the archive is at http://127.0.0.1:{port}/  user {DEMO_USER}, "
                  f"password {password}  (Ctrl-C stops everything)", flush=True)  # fmt: skip
            break
    try:
        for _ in output:  # drain its log so it never blocks on a full pipe
            pass
        return process.wait()
    except KeyboardInterrupt:
        process.terminate()
        process.wait(timeout=30)
        return 0


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def _summary(code: int, keys: list[str], expected: int, uploaded: int, wall_s: float) -> None:
    print(
        f"demo: backfill exit {code}; {len(keys)} of {expected} recordings in the "
        f"bucket, {uploaded} uploaded by this run; wall {wall_s:.1f} s"
        + (f", {uploaded / wall_s:.1f} recordings/s" if uploaded else "")
    )
    print("demo: run it again: every recording is already archived, nothing is uploaded twice")


def _print_bucket(s3: SeaweedS3, since: datetime) -> tuple[list[str], int]:
    """Print every object with its call; return the keys and how many were written `since`."""
    client = s3.client()
    keys: list[str] = []
    uploaded = 0
    for page in client.get_paginator("list_objects_v2").paginate(Bucket=BUCKET):
        for item in page.get("Contents", []):
            keys.append(item["Key"])
    for key in sorted(keys):
        head = client.head_object(Bucket=BUCKET, Key=key)
        meta = head["Metadata"]
        uploaded += head["LastModified"] >= since
        who = f"{meta.get('caller', '')} -> {meta.get('callee', '')}"
        print(f"  {head['ContentLength']:>8} B  {key}  [{who}, {meta.get('duration-s')} s]")
    return keys, uploaded


if __name__ == "__main__":
    raise SystemExit(main())
