"""Scale-out benchmark: one archiver worker against two, sharing one PostgreSQL state.

Run: scripts/bench-scale [--recordings 400] [--per-day 100] [--size-rows 200000]

Everything runs on 127.0.0.1: the PBX simulator (its own process), SeaweedFS and a PostgreSQL
server (`archiver.lab.postgres`), all unpinned: they stand for the PBX, S3 and the database, which
are other machines. The same corpus is archived twice, each time into a new database and bucket:

- one worker: `archiver backfill` under `taskset -c 0`;
- two workers: the same command under `taskset -c 0` and under `taskset -c 1`, started together,
  each with its own work folder; done when both have exited.

It prints each run's wall time and recordings/s, then `scale_ratio X` (two workers' throughput
over one's; the goal is >= 1.8 on two cores). Then the claim overhead per recording: the state
calls a worker adds for sharing (claim, the renew before upload, release) timed against the same
server, in ms, and a PBX request slot (advisory lock taken and given back) in ms. Last, the size
of the state per million recordings: `--size-rows` verified rows with realistic values written to
PostgreSQL (table + indexes + TOAST, after VACUUM) and to SQLite (the file), scaled to 10^6.
The load average is printed at the start and the end: other work on the machine moves the numbers.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from datetime import timedelta
from pathlib import Path

from run import (
    FIRST_DAY,
    PBX_PASSWORD,
    PBX_USER,
    PYTHON,
    corpus,
    simulator,
    split_days,
)

from archiver.config import Config, parse_config
from archiver.lab.postgres import LocalPostgres
from archiver.lab.seaweed import SeaweedS3
from archiver.state.api import open_state, worker_id
from archiver.state.pg_state import PostgresState

# `--nice N`: the workers run under `nice -n N` (as root, a negative N keeps other work on a
# shared machine from taking their cores; the same for both runs).
NICE: list[str] = []
# `--transcode-workers N`: transcode.workers of every worker (default: one per usable CPU, which
# is 1 under taskset -c N: one transcode at a time leaves the core idle while it waits for I/O).
TRANSCODE_WORKERS: int | None = 2
# `--state sqlite`: the workers share one SQLite file instead (one host; for comparison).
STATE = "postgresql"


def _config(sim_url: str, s3: SeaweedS3, bucket: str, db_url: str, work: Path) -> str:
    transcode = "" if TRANSCODE_WORKERS is None else f"workers = {TRANSCODE_WORKERS}"
    return f"""
[[pbx]]
name = "bench"
url = "{sim_url}"
username = "{PBX_USER}"
password_env = "BENCH_PBX_PASSWORD"
timezone = "Europe/Istanbul"

[poll]
settle_s = 0

[transcode]
{transcode}

[s3]
bucket = "{bucket}"
endpoint_url = "{s3.endpoint_url}"
region = "us-east-1"
addressing_style = "path"

[state]
{db_url}
work_dir = "{work}"
"""


def _run_workers(
    label: str,
    cores: Sequence[str],
    days: int,
    work: Path,
    sim_url: str,
    s3: SeaweedS3,
    pg: LocalPostgres,
    expected: int,
) -> tuple[float, float]:
    """Run one `archiver backfill` per core, all at once, on a new database and bucket; return
    the wall time until the last exits and the CPU seconds of all of them. Raise if any failed
    or the bucket is short."""
    bucket = f"scale-{label}"
    s3.create_bucket(bucket)
    if STATE == "postgresql":
        db_url = f'url = "{pg.create_database(f"scale_{label}")}"'
    else:
        db_url = f'path = "{work / label / "ledger.sqlite3"}"'
    env = {
        **os.environ,
        "BENCH_PBX_PASSWORD": PBX_PASSWORD,
        "AWS_ACCESS_KEY_ID": s3.access_key,
        "AWS_SECRET_ACCESS_KEY": s3.secret_key,
    }
    last = FIRST_DAY + timedelta(days=days - 1)
    commands = []
    for n, core in enumerate(cores):
        config = work / f"{label}-{n}.toml"
        config.write_text(_config(sim_url, s3, bucket, db_url, work / f"{label}-work-{n}"), "utf-8")
        commands.append(
            [*NICE, "taskset", "-c", core, PYTHON, "-m", "archiver", "backfill", "--config",
             str(config), "--from", FIRST_DAY.isoformat(), "--to", last.isoformat(),
             "--log-level", "error"]
        )  # fmt: skip
    started = time.perf_counter()
    procs = [subprocess.Popen(command, env=env) for command in commands]
    codes, cpu_s = [], 0.0
    for proc in procs:
        # wait4's rusage: the worker and every ffmpeg it waited for.
        _, status, usage = os.wait4(proc.pid, 0)
        proc.returncode = os.waitstatus_to_exitcode(status)
        codes.append(proc.returncode)
        cpu_s += usage.ru_utime + usage.ru_stime
    wall_s = time.perf_counter() - started
    pages = s3.client().get_paginator("list_objects_v2").paginate(Bucket=bucket)
    stored = sum(len(page.get("Contents", [])) for page in pages)
    if any(codes) or stored != expected:
        raise RuntimeError(f"{label}: exit codes {codes}, {stored} of {expected} stored")
    return wall_s, cpu_s


def _state_cfg(url: str) -> Config:
    return parse_config(
        {
            "pbx": {"url": "http://127.0.0.1:1", "username": "u", "password": "p"},
            "s3": {"bucket": "unused"},
            "state": {"url": url},
        },
        "bench",
    )


def claim_overhead_ms(pg: LocalPostgres, recordings: int = 2000) -> tuple[float, float]:
    """Per recording, the ms of claim + renew + release; per PBX request, the ms of taking and
    giving back an advisory-lock slot."""
    from archiver.lab.simulator import Corpus
    from archiver.names import parse_path

    state = open_state(_state_cfg(pg.create_database("scale_claims")))
    assert isinstance(state, PostgresState)
    try:
        built = Corpus(seed=1, start=FIRST_DAY, days=1, per_day=recordings, odd_names=False,
                       junk=False)  # fmt: skip
        from zoneinfo import ZoneInfo

        tz = ZoneInfo("Europe/Istanbul")
        recs = [parse_path("bench", r.path, tz) for r in built.recordings() if r.valid]
        state.ledger.discover(recs)
        me = worker_id()
        started = time.perf_counter()
        for rec in recs:
            state.ledger.claim(rec.key, me, 300)
            state.ledger.renew(rec.key, me, 300)
            state.ledger.release(rec.key, me)
        claim_ms = 1000 * (time.perf_counter() - started) / len(recs)
        gate = state.pbx_gate("bench", 2)
        assert gate is not None

        async def slots() -> float:
            began = time.perf_counter()
            for _ in range(500):
                async with gate():
                    pass
            return 1000 * (time.perf_counter() - began) / 500

        slot_ms = asyncio.run(slots())
    finally:
        state.close()
    return claim_ms, slot_ms


_SIZE_SQL = """
INSERT INTO recordings (key, pbx, folder, name, day, state, attempts, retryable, object_key,
    source_sha256, source_bytes, mp3_bytes, mp3_md5, audio_s, discovered_at, updated_at,
    lease_owner, lease_until)
SELECT 'pbx/trunk-sip-902163713822/' || name, 'pbx', 'trunk-sip-902163713822', name,
    '2016-11-' || lpad((1 + n % 30)::text, 2, '0'), 'verified', 0, 1,
    'recordings/pbx/2016/11/17/20161117-113000_100_903123320404_' || n || '.mp3',
    encode(sha256(n::text::bytea), 'hex'), 200000 + n % 1000, 100000 + n % 1000,
    substr(md5(n::text), 1, 22) || '==', 60 + n % 600, 1479366000 + n, 1479366000 + n,
    'db-host-1:12345:abcdef', NULL
FROM (SELECT n, '20161117-' || lpad((n % 240000)::text, 6, '0') || '-100-903123320404-'
      || (1479366000 + n) || '.' || n || '-' || (n % 600) || '.gsm' AS name
      FROM generate_series(1, %s) AS n) AS g
"""


def state_size_per_million(pg: LocalPostgres, work: Path, rows: int) -> tuple[float, float]:
    """MB per million verified recordings in PostgreSQL (table + indexes) and in SQLite."""
    import psycopg

    url = pg.create_database("scale_size")
    state = open_state(_state_cfg(url))
    state.close()
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(_SIZE_SQL.replace("%s", str(rows)).encode())
        conn.execute("VACUUM ANALYZE recordings")
        row = conn.execute("SELECT pg_total_relation_size('recordings')").fetchone()
        pg_bytes = int(row[0]) if row else 0
        values = conn.execute(
            "SELECT key, pbx, folder, name, day, state, attempts, retryable, object_key,"
            " source_sha256, source_bytes, mp3_bytes, mp3_md5, audio_s, discovered_at,"
            " updated_at, lease_owner FROM recordings"
        ).fetchall()
    path = work / "size.sqlite3"
    sqlite_state = open_state(parse_config(
        {"pbx": {"url": "http://127.0.0.1:1", "username": "u", "password": "p"},
         "s3": {"bucket": "unused"}, "state": {"path": str(path)}}, "bench"))  # fmt: skip
    sqlite_state.close()
    import sqlite3

    with sqlite3.connect(path) as db:
        db.executemany(
            "INSERT INTO recordings (key, pbx, folder, name, day, state, attempts, retryable,"
            " object_key, source_sha256, source_bytes, mp3_bytes, mp3_md5, audio_s,"
            " discovered_at, updated_at, lease_owner) VALUES"
            " (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            values,
        )
    with sqlite3.connect(path) as db:
        db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        db.execute("VACUUM")
    scale = 1_000_000 / rows
    return pg_bytes * scale / 2**20, path.stat().st_size * scale / 2**20


def _load() -> str:
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--recordings", type=int, default=400)
    parser.add_argument("--per-day", type=int, default=100)
    parser.add_argument("--max-duration-s", type=int, default=None, help="longest call simulated")
    parser.add_argument("--size-rows", type=int, default=200_000)
    parser.add_argument("--skip", nargs="*", default=[], choices=["runs", "claims", "size"])
    parser.add_argument(
        "--transcode-workers", type=int, default=2, help="per worker; 0: archiver's default"
    )
    parser.add_argument("--state", choices=["postgresql", "sqlite"], default="postgresql")
    parser.add_argument("--nice", type=int, default=None, help="run the workers under nice -n N")
    args = parser.parse_args(argv)
    global STATE, TRANSCODE_WORKERS
    STATE = args.state
    TRANSCODE_WORKERS = args.transcode_workers or None
    if args.nice is not None:
        NICE[:] = ["nice", "-n", str(args.nice)]
    if (os.cpu_count() or 1) < 2:
        print("bench-scale: needs two cores", file=sys.stderr)
        return 2
    print(f"bench-scale: nproc {os.cpu_count()}, load average {_load()}", flush=True)
    days, per_day = split_days(args.recordings, args.per_day)
    recs = corpus(days, per_day, args.max_duration_s)
    with tempfile.TemporaryDirectory(prefix="archiver-scale-") as folder, LocalPostgres() as pg:
        work = Path(folder)
        if "runs" not in args.skip:
            n = len(recs)
            # A new simulator and S3 server per run: neither run inherits the other's warm state.
            with SeaweedS3(data_dir=work / "s3-one") as s3, simulator(
                days, per_day, args.max_duration_s
            ) as sim:  # fmt: skip
                one_s, one_cpu = _run_workers("one", ["0"], days, work, sim[0], s3, pg, n)
            print(f"one worker  (core 0):     {n} rec {one_s:7.1f} wall_s {n / one_s:6.2f}"
                  f" rec/s {1000 * one_cpu / n:6.0f} cpu_ms/rec  load {_load()}",
                  flush=True)  # fmt: skip
            with SeaweedS3(data_dir=work / "s3-two") as s3, simulator(
                days, per_day, args.max_duration_s
            ) as sim:  # fmt: skip
                two_s, two_cpu = _run_workers("two", ["0", "1"], days, work, sim[0], s3, pg, n)
            print(f"two workers (cores 0, 1): {n} rec {two_s:7.1f} wall_s {n / two_s:6.2f}"
                  f" rec/s {1000 * two_cpu / n:6.0f} cpu_ms/rec  load {_load()}",
                  flush=True)  # fmt: skip
            print(f"scale_ratio {one_s / two_s:.2f}  (goal >= 1.8)", flush=True)
            # Robust to other load on the machine: how much CPU the sharing itself costs.
            print(f"cpu_per_recording_two_over_one {two_cpu / one_cpu:.3f}", flush=True)
        if "claims" not in args.skip:
            claim_ms, slot_ms = claim_overhead_ms(pg)
            print(f"claim_overhead_ms_per_recording {claim_ms:.2f} (claim + renew + release)")
            print(f"pbx_slot_ms_per_request {slot_ms:.2f} (advisory lock taken and released)")
        if "size" not in args.skip:
            pg_mb, sqlite_mb = state_size_per_million(pg, work, args.size_rows)
            print(f"state_mb_per_million_recordings postgresql {pg_mb:.0f} sqlite {sqlite_mb:.0f}"
                  f"  (from {args.size_rows} verified rows)")  # fmt: skip
    print(f"bench-scale: load average {_load()} at the end")
    return 0


if __name__ == "__main__":
    sys.exit(main())
