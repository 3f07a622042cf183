"""The chaos run behind `scripts/chaos`: exactly-once archival through kills, faults and an outage.

Starts the PBX simulator with faults on (HTTP 5xx, cut bodies, resets, HTML login pages, hostile
listing lines) holding 500 valid recordings, and a SeaweedFS S3 server; runs `archiver backfill`
as a subprocess and SIGKILLs it at random moments (20 times by default), starting it again each
time; stops SeaweedFS for 30 s once two fifths are archived; plants an incomplete multipart
upload under the prefix (what a kill mid-multipart leaves); then lets one last run finish.
Finally it compares the bucket with the simulator's valid listing and prints one line:

    expected N archived N lost 0 duplicated 0 corrupt 0 tempfiles 0 stale_multipart 0

and exits 1 if any of the last five is not 0 (or if a file the PBX never listed as a valid
recording was requested or stored).

Then the hostile-PBX phase: `archiver run` (the daemon, with its HTTP server) polls two PBXs,
a hostile one listed first that answers every request with a slow drip (one byte every 0.8 s), a
302 redirect to another port or a listing followed by 60 MiB of junk lines, and a good one with
yesterday's recordings. /healthz is asked every 0.25 s throughout. Once the good PBX is archived
and the daemon has met each hostile reply, it is stopped and the phase prints

    hostile_pbx expected N archived N lost 0 duplicated 0 corrupt 0 tempfiles 0 stale_multipart 0
    healthz_missed 0 healthz_max_ms M faults_seen 3

(one line), exiting 1 unless those zeros hold and all three faults were met
(`archiver/lab/chaos_hostile.py`). Progress goes to stderr, the daemon's logs to
`<data>/daemon.log` and `<data>/daemon-hostile.log`. Everything binds to 127.0.0.1; every
process it starts, it stops.

`duplicated` counts objects beyond the first for one source recording (by `source-name`
metadata); `corrupt` counts objects whose bytes' MD5 is not their `md5` metadata, or whose
`source-sha256` is not the SHA-256 of the PBX's file; `tempfiles` counts files left in the work
folders; `stale_multipart` counts incomplete multipart uploads under the prefix. A second line,
`uploads N`, counts the uploads S3 accepted (seen by a pass-through proxy in front of it): more
than `archived` means a recording was worked on twice even where HEAD-before-PUT hid it.

`--workers 2 --state postgresql` runs two daemons on the one PBX sharing a PostgreSQL state (a
local server, `archiver.lab.postgres`); the SIGKILLs alternate between them, PostgreSQL itself
is crashed (`pg_ctl -m immediate stop`) and started again once, when a fifth of the recordings
is archived; the S3 outage comes at two fifths (with one worker as with several, the outages hit
daemons at work).
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import hashlib
import os
import random
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from dataclasses import dataclass
from datetime import date, timedelta
from pathlib import Path
from typing import TextIO

from archiver.lab.chaos_hostile import hostile_phase
from archiver.lab.postgres import LocalPostgres
from archiver.lab.s3proxy import CountingS3Proxy
from archiver.lab.seaweed import SeaweedS3
from archiver.lab.simulator import SimRecording, SimulatorOptions, SimulatorThread

__all__ = ["Audit", "main"]

BUCKET = "chaos-recordings"
PREFIX = "recordings"
PASSWORD = "chaos-pbx-password"  # noqa: S105 -- the password of a local fake PBX
FIRST_DAY = date(2016, 11, 14)


@dataclass(frozen=True)
class Audit:
    """The comparison of the bucket with the simulator's listing."""

    expected: int
    archived: int
    lost: int
    duplicated: int
    corrupt: int
    tempfiles: int
    stale_multipart: int
    unexpected: int  # objects of recordings that were not listed as valid
    hostile_requested: int  # downloads of anything but a valid listed recording
    uploads: int  # uploads S3 accepted under the prefix

    def line(self) -> str:
        return (
            f"expected {self.expected} archived {self.archived} lost {self.lost} "
            f"duplicated {self.duplicated} corrupt {self.corrupt} tempfiles {self.tempfiles} "
            f"stale_multipart {self.stale_multipart}"
        )

    @property
    def ok(self) -> bool:
        return not (
            self.lost
            or self.duplicated
            or self.corrupt
            or self.tempfiles
            or self.stale_multipart
            or self.unexpected
            or self.hostile_requested
            or self.uploads > self.archived
        )


# Short, so that a killed worker's recordings are taken over within the run even when no
# worker restarts on its host (a restarted one frees its dead predecessor's leases at once).
LEASE_S = 20.0


def _state_table(data: Path, work: Path, pg_url: str | None) -> str:
    if pg_url is None:
        return f'path = "{data / "ledger.sqlite3"}"\nwork_dir = "{work}"\n'
    return f'url = "{pg_url}"\nwork_dir = "{work}"\nlease_s = {LEASE_S}\noutage_s = 60\n'


def _config(sim_url: str, s3_url: str, state_table: str) -> str:
    return f"""
[pbx]
url = "{sim_url}"
username = "admin"
password_env = "CHAOS_PBX_PASSWORD"
request_timeout_s = 10

[poll]
settle_s = 0

[transcode]
workers = 2

[s3]
bucket = "{BUCKET}"
prefix = "{PREFIX}"
endpoint_url = "{s3_url}"
region = "us-east-1"
addressing_style = "path"
# Small, so that the planted crash leftover is stale by the next start.
stale_multipart_s = 5

[state]
{state_table}
[retry]
attempts = 8
timeout_s = 60
wait_initial_s = 0.5
wait_max_s = 5
max_recording_attempts = 1000

[daemon]
shutdown_grace_s = 5
"""


def _say(message: str) -> None:
    print(f"chaos: {message}", file=sys.stderr, flush=True)


class _Daemon:
    """`archiver backfill` over the simulated days, as a subprocess that may be killed."""

    def __init__(self, config: Path, env: dict[str, str], days: int, log: TextIO) -> None:
        last = FIRST_DAY + timedelta(days=days - 1)
        self._command = [
            sys.executable, "-m", "archiver", "backfill", "--config", str(config),
            "--from", FIRST_DAY.isoformat(), "--to", last.isoformat(),
        ]  # fmt: skip
        self._env = env
        self._log = log
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        self.process = subprocess.Popen(
            self._command, env=self._env, stdout=self._log, stderr=subprocess.STDOUT
        )

    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def kill(self) -> bool:
        """SIGKILL the daemon if it is running; return whether it was."""
        if self.process is None:
            return False
        alive = self.process.poll() is None
        if alive:
            self.process.kill()
        self.process.wait()
        return alive

    def finish(self, timeout_s: float) -> int:
        """Wait for the daemon to exit on its own; return its exit code."""
        if self.process is None:
            raise RuntimeError("not started")
        return self.process.wait(timeout=timeout_s)


def _outage(s3: SeaweedS3, seconds: float) -> None:
    _say(f"stopping SeaweedFS for {seconds:.0f} s under a working daemon")
    s3.stop()
    time.sleep(seconds)
    s3.start()
    _say("SeaweedFS is back")


def _plant_stale_multipart(s3: SeaweedS3) -> None:
    """What a kill in the middle of a multipart upload leaves behind."""
    client = s3.client()
    key = f"{PREFIX}/pbx/planted-crash-leftover.mp3"
    upload = client.create_multipart_upload(Bucket=BUCKET, Key=key)
    client.upload_part(
        Bucket=BUCKET, Key=key, UploadId=upload["UploadId"], PartNumber=1, Body=b"\0" * 4096
    )


def _archived_so_far(log_path: Path) -> int:
    return log_path.read_text(encoding="utf-8", errors="replace").count('"event": "archived"')


def _wait_for_work(daemon: _Daemon, log_path: Path, timeout_s: float = 60.0) -> None:
    """Return once the running daemon has archived something more (it is mid-pipeline)."""
    before = _archived_so_far(log_path)
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline and daemon.running():
        if _archived_so_far(log_path) > before:
            return
        time.sleep(0.2)


def _pg_outage(pg: LocalPostgres, seconds: float) -> None:
    _say(f"crashing PostgreSQL (pg_ctl -m immediate stop) for {seconds:.0f} s")
    pg.crash()
    time.sleep(seconds)
    pg.start()
    _say("PostgreSQL is back")


def _chaos(
    args: argparse.Namespace,
    daemons: list[_Daemon],
    s3: SeaweedS3,
    log_path: Path,
    pg: LocalPostgres | None,
    expected: int,
) -> None:
    """Kill the daemons `args.kills` times at random moments, taking turns; once a fifth of the
    `expected` recordings is archived (or a quarter of the kills is done), crash PostgreSQL (if
    the state is there) under running daemons; at two fifths (or half the kills), stop S3 under
    a daemon that is mid-run and let it live through the whole outage."""
    rng = random.Random(args.seed)  # noqa: S311 -- repeatable kill moments, not crypto
    kills = 0
    outage_done = pg_outage_done = False
    min_life_s, max_life_s = args.min_life_s, args.max_life_s
    for daemon in daemons:
        daemon.start()
    while kills < args.kills:
        # Each outage comes at a share of the work done (or of the kills, whichever is first),
        # so that it hits daemons that are still working however many share the work.
        done = _archived_so_far(log_path) / max(expected, 1)
        if pg is not None and not pg_outage_done and (done >= 0.2 or kills >= args.kills // 4):
            pg_outage_done = True
            _wait_for_work(daemons[0], log_path)
            _pg_outage(pg, args.pg_outage_s)
        if not outage_done and (done >= 0.4 or kills >= args.kills // 2):
            outage_done = True
            _plant_stale_multipart(s3)
            _wait_for_work(daemons[0], log_path)
            outage = threading.Thread(target=_outage, args=(s3, args.outage_s), daemon=True)
            outage.start()
            outage.join()
        time.sleep(rng.uniform(min_life_s, max_life_s))
        victim = daemons[kills % len(daemons)]
        if victim.kill():
            kills += 1
            _say(f"SIGKILL {kills}/{args.kills} (worker {daemons.index(victim)})")
        else:
            # Once everything is archived a life is only start-up and listing (a second or
            # two): aim the next kills there, or they would never land.
            code = victim.process.returncode if victim.process else "?"
            _say(f"worker {daemons.index(victim)} had exited with {code}")
            min_life_s, max_life_s = 0.3, max(0.6, max_life_s / 2)
        victim.start()
    for daemon in daemons:
        daemon.kill()


def audit(
    s3: SeaweedS3,
    valid: list[SimRecording],
    sim: SimulatorThread,
    works: list[Path],
    proxy: CountingS3Proxy | None = None,
    bucket: str = BUCKET,
) -> Audit:
    """Compare the bucket under the prefix with the valid recordings the simulator lists."""
    corpus = sim.corpus
    by_name = {rec.name: rec for rec in valid}
    client = s3.client()
    per_source: Counter[str] = Counter()
    corrupt = unexpected = 0
    pages = client.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=f"{PREFIX}/")
    for page in pages:
        for item in page.get("Contents", []):
            got = client.get_object(Bucket=bucket, Key=item["Key"])
            body = got["Body"].read()
            meta = got["Metadata"]
            source = meta.get("source-name", "")
            per_source[source] += 1
            md5 = base64.b64encode(hashlib.md5(body).digest()).decode()  # noqa: S324 -- S3's
            rec = by_name.get(source)
            if rec is None:
                unexpected += 1
                continue
            sha256 = hashlib.sha256(corpus.audio_bytes(rec)).hexdigest()
            corrupt += md5 != meta.get("md5") or sha256 != meta.get("source-sha256")
    archived = sum(1 for name in by_name if per_source[name] > 0)
    uploads = client.list_multipart_uploads(Bucket=bucket, Prefix=f"{PREFIX}/")
    allowed = {rec.relative_path for rec in valid}
    return Audit(
        expected=len(valid),
        archived=archived,
        lost=len(valid) - archived,
        duplicated=sum(count - 1 for name, count in per_source.items() if name in by_name),
        corrupt=corrupt,
        tempfiles=sum(
            sum(1 for path in work.rglob("*") if path.is_file()) for work in works if work.exists()
        ),
        stale_multipart=len(uploads.get("Uploads", [])),
        unexpected=unexpected,
        hostile_requested=sum(1 for name in sim.requested if name not in allowed),
        uploads=proxy.upload_count(f"/{bucket}/{PREFIX}/") if proxy is not None else -1,
    )


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="scripts/chaos", description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, help="state folder (default: a temporary one)")
    parser.add_argument("--recordings", type=int, default=500, help="valid recordings (x5 days)")
    parser.add_argument("--kills", type=int, default=20)
    parser.add_argument("--outage-s", type=float, default=30.0)
    parser.add_argument("--min-life-s", type=float, default=2.0)
    parser.add_argument("--max-life-s", type=float, default=8.0)
    parser.add_argument("--max-duration-s", type=int, default=8, help="longest call simulated")
    parser.add_argument("--seed", type=int, default=2016)
    parser.add_argument("--workers", type=int, default=1, help="daemons sharing the work")
    parser.add_argument("--state", choices=["sqlite", "postgresql"], default="sqlite")
    parser.add_argument("--pg-outage-s", type=float, default=5.0)
    parser.add_argument("--hostile-max-s", type=float, default=300.0,
                        help="longest the hostile-PBX phase may take")  # fmt: skip
    parser.add_argument("--skip-hostile", action="store_true", help="no hostile-PBX phase")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    days = 5
    if args.recordings % days:
        print("--recordings must be a multiple of 5", file=sys.stderr)
        return 2
    owned = args.data is None
    data: Path = Path(tempfile.mkdtemp(prefix="chaos-")) if owned else args.data.resolve()
    shutil.rmtree(data / "state", ignore_errors=True)  # every run starts from nothing
    state = data / "state"
    state.mkdir(parents=True)
    options = SimulatorOptions(
        username="admin", password=PASSWORD, seed=args.seed, start=FIRST_DAY, days=days,
        per_day=args.recordings // days, max_duration_s=args.max_duration_s, odd_names=False,
        fail_rate=0.05, truncate_rate=0.05, reset_rate=0.03, html_errors=True, delay_ms=5,
        hostile_lines=100,
    )  # fmt: skip
    started = time.monotonic()
    hostile = None
    try:
        with contextlib.ExitStack() as stack:
            sim = stack.enter_context(SimulatorThread(options))
            s3 = stack.enter_context(SeaweedS3(data_dir=state / "s3"))
            proxy = stack.enter_context(CountingS3Proxy(s3.endpoint_url))
            log = stack.enter_context((data / "daemon.log").open("w"))
            pg = stack.enter_context(LocalPostgres()) if args.state == "postgresql" else None
            pg_url = pg.create_database("archiver") if pg is not None else None
            s3.create_bucket(BUCKET)
            valid = [rec for rec in sim.corpus.recordings() if rec.valid]
            works = [state / f"work-{n}" for n in range(args.workers)]
            configs = []
            for n, work in enumerate(works):
                config = state / f"archiver-{n}.toml"
                table = _state_table(state, work, pg_url)
                config.write_text(_config(sim.base_url, proxy.endpoint_url, table), "utf-8")
                configs.append(config)
            env = {
                **{k: v for k, v in os.environ.items() if not k.startswith("AWS_")},
                "CHAOS_PBX_PASSWORD": PASSWORD,
                "AWS_ACCESS_KEY_ID": s3.access_key,
                "AWS_SECRET_ACCESS_KEY": s3.secret_key,
                "AWS_CONFIG_FILE": "/nonexistent/aws-config",
                "AWS_SHARED_CREDENTIALS_FILE": "/nonexistent/aws-credentials",
                "AWS_EC2_METADATA_DISABLED": "true",
            }
            _say(
                f"{len(valid)} valid recordings; {args.workers} worker(s) on {args.state}; "
                f"daemon log {data / 'daemon.log'}"
            )
            daemons = [_Daemon(config, env, days, log) for config in configs]
            try:
                _chaos(args, daemons, s3, data / "daemon.log", pg, len(valid))
                _say("final clean run")
                for daemon in daemons:
                    daemon.start()
                codes = [daemon.finish(timeout_s=1800) for daemon in daemons]
                _say(f"final run exited with {codes}")
            finally:
                for daemon in daemons:
                    daemon.kill()
            result = audit(s3, valid, sim, works, proxy)
            _say(f"the PBX answered at most {sim.peak_requests} request(s) at once")
            hostile = None if args.skip_hostile else hostile_phase(args, s3, data, env)
    finally:
        if owned:
            shutil.rmtree(data, ignore_errors=True)
    print(result.line(), flush=True)
    print(f"uploads {result.uploads}", flush=True)
    if result.unexpected or result.hostile_requested:
        _say(f"unexpected objects {result.unexpected}, bad requests {result.hostile_requested}")
    if hostile is not None:
        print(hostile.line(), flush=True)
    _say(f"wall {time.monotonic() - started:.0f} s")
    return 0 if result.ok and (hostile is None or hostile.ok) else 1


if __name__ == "__main__":
    raise SystemExit(main())
