"""Search latency of the catalogue (what `archiver web` and its JSON API run), over N synthetic
rows, on SQLite (a real file) and on PostgreSQL (a LocalPostgres server of this machine's
Debian binaries, or --url).

    .venv/bin/python bench/search.py [--rows 1000000] [--runs 100] [--backend sqlite|postgresql]
                                     [--keep PATH] [--url postgresql://...]

Rows are spread over two years (2025-2026), written in time order as an archive writes them
(give or take an hour), at two PBXs (Europe/Istanbul and
America/New_York); callers from a pool of 20,000 Turkish numbers over nine area and mobile codes
(so one code such as 0532 holds ~1/9 of the calls and one number ~50), written in the spellings
PBXs use (905..., 0532..., 532...); callees extensions (70 %) or numbers. Five searches, each
`Catalogue.search` as the page runs it (the page AND the total, counted up to 10,000):

- a partial number (`0532`) over one month;
- the last 7 digits of a number over one month;
- a full number (national spelling) over one year;
- one day narrowed to 14:00-18:00, sorted by duration;
- page 5 of one month, sorted by caller;
- a dial status no call has (`dial_status=x`) over the whole archive (issue 19: not a scan).

Prints p50/p95/max in ms for each, the goal (p95 < 50 ms at 1M rows, < 150 ms at 10M) and the
load average beside them: this machine is shared, the numbers are only as quiet as it was.
"""

from __future__ import annotations

import argparse
import os
import random
import statistics
import tempfile
import time
from collections.abc import Iterator
from dataclasses import replace
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

from archiver.state.catalogue import Catalogue, SearchQuery, number_key, party_digits
from archiver.state.db import Db
from archiver.state.migrate import open_database

IST = ZoneInfo("Europe/Istanbul")
NYC = ZoneInfo("America/New_York")
START = datetime(2025, 1, 1)
SPAN_S = 2 * 365 * 86400
POOL = 20_000
CODES = ("532", "533", "535", "542", "505", "212", "216", "312", "232")
COLUMNS = (
    "object_key, recording_key, pbx, trunk, caller, callee, caller_number, callee_number,"
    " started_local, started_utc_s, duration_s, size_bytes, dial_status, autocall_id,"
    " source_name, archived_at_s, caller_digits, callee_digits, started_wall_s"
)


def pool(seed: int = 1) -> list[str]:
    rng = random.Random(seed)
    return [f"90{rng.choice(CODES)}{rng.randrange(10**7):07d}" for _ in range(POOL)]


def spelling(number: str, rng: random.Random) -> str:
    """The number as a PBX may have written it: 90..., 0..., or the national number."""
    roll = rng.random()
    if roll < 0.7:
        return number
    return "0" + number[2:] if roll < 0.9 else number[2:]


def rows(count: int, numbers: list[str], seed: int = 1) -> Iterator[tuple[object, ...]]:
    rng = random.Random(seed)
    archived_s = time.time()
    step_s = SPAN_S / count
    for index in range(count):
        # In the order an archive writes them: by time, give or take an hour.
        offset_s = int(index * step_s) + rng.randrange(-3600, 3600)
        wall = START + timedelta(seconds=min(max(offset_s, 0), SPAN_S - 1))
        pbx, zone = ("nyc", NYC) if index % 3 == 0 else ("ist", IST)
        started = wall.replace(tzinfo=zone)
        caller = spelling(rng.choice(numbers), rng)
        callee = str(rng.randrange(100, 200)) if rng.random() < 0.7 else rng.choice(numbers)
        name = f"{wall:%Y%m%d-%H%M%S}-{caller}-{callee}-{1700000000 + index}.{index}-60.gsm"
        yield (
            f"recordings/{pbx}/{wall:%Y/%m/%d}/{name[:-4]}.mp3", f"{pbx}/trunk-{index % 4}/{name}",
            pbx, f"trunk-{index % 4}", caller, callee, number_key(caller), number_key(callee),
            started.isoformat(), int(started.timestamp()), rng.randrange(5, 900),
            rng.randrange(10_000, 4_000_000), None, None, name, archived_s,
            party_digits(caller), party_digits(callee),
            int(wall.replace(tzinfo=UTC).timestamp()),
        )  # fmt: skip


def build_sqlite(path: Path, count: int, numbers: list[str]) -> None:
    db = open_database(path).connection
    db.execute("PRAGMA synchronous=OFF")  # building a bench file, not guarding one
    db.execute("PRAGMA cache_size=-1000000")  # 1 GB of pages: the trigram index stays in memory
    # The B-tree indexes are dropped while loading and built again after from their own SQL
    # (a sort each, not ten million random inserts): the file ends as the migrations left it.
    indexes = db.execute(
        "SELECT name, sql FROM sqlite_master WHERE type = 'index' AND tbl_name = 'catalogue'"
        " AND sql IS NOT NULL"
    ).fetchall()
    for name, _ in indexes:
        db.execute(f"DROP INDEX {name}")
    insert = f"INSERT INTO catalogue ({COLUMNS}) VALUES ({', '.join('?' * 19)})"  # noqa: S608
    batch: list[tuple[object, ...]] = []
    for row in rows(count, numbers):
        batch.append(row)
        if len(batch) == 50_000:
            db.execute("BEGIN")
            db.executemany(insert, batch)
            db.execute("COMMIT")
            batch.clear()
    if batch:
        db.execute("BEGIN")
        db.executemany(insert, batch)
        db.execute("COMMIT")
    for _, sql in indexes:
        db.execute(sql)
    db.execute("ANALYZE")
    db.close()


def build_postgres(url: str, count: int, numbers: list[str]) -> None:
    import psycopg

    with psycopg.connect(url, autocommit=True) as conn:
        with conn.cursor().copy(f"COPY catalogue ({COLUMNS}) FROM STDIN") as copy:
            for row in rows(count, numbers):
                copy.write_row(row)
        # What autovacuum does soon after a load: statistics and the visibility map (which
        # lets the covering indexes answer without reading the table).
        conn.execute("VACUUM ANALYZE catalogue")


def queries(numbers: list[str], runs: int) -> dict[str, list[SearchQuery]]:
    rng = random.Random(2)
    found: dict[str, list[SearchQuery]] = {name: [] for name in (
        "0532, one month", "last 7 digits, one month", "full number, one year",
        "one day 14-18, by duration", "page 5 of a month, by caller",
        "dial_status=x, whole archive")}  # fmt: skip
    for _ in range(runs):
        month = date(rng.choice((2025, 2026)), rng.randrange(1, 13), 1)
        following = (month + timedelta(days=32)).replace(day=1)
        since, until = (
            datetime(month.year, month.month, 1),
            datetime(following.year, following.month, 1),
        )
        number = rng.choice(numbers)
        year = rng.choice((2025, 2026))
        day = date(year, rng.randrange(1, 13), rng.randrange(1, 29))
        found["0532, one month"].append(
            SearchQuery(number="0532", local_since=since, local_until=until)
        )
        found["last 7 digits, one month"].append(
            SearchQuery(number=number[-7:], local_since=since, local_until=until)
        )
        found["full number, one year"].append(
            SearchQuery(
                number=f"0{number[2:5]} {number[5:8]} {number[8:10]} {number[10:]}",
                local_since=datetime(year, 1, 1),
                local_until=datetime(year + 1, 1, 1),
            )
        )
        found["one day 14-18, by duration"].append(
            SearchQuery(
                local_since=datetime(day.year, day.month, day.day, 14),
                local_until=datetime(day.year, day.month, day.day, 18),
                sort="duration",
            )
        )
        found["page 5 of a month, by caller"].append(
            SearchQuery(local_since=since, local_until=until, sort="caller", order="asc", page=5)
        )
        found["dial_status=x, whole archive"].append(SearchQuery(dial_status="x"))
    return found  # fmt: skip


def measure(catalogue: Catalogue, batch: list[SearchQuery]) -> tuple[list[float], list[int]]:
    times_ms: list[float] = []
    totals: list[int] = []
    for query in batch:
        started = time.perf_counter()
        page = catalogue.search(replace(query, limit=50))
        times_ms.append((time.perf_counter() - started) * 1000)
        totals.append(page.total)
    return times_ms, totals


def report(label: str, times_ms: list[float], totals: list[int], goal_ms: float) -> None:
    ordered = sorted(times_ms)
    p95 = ordered[max(0, round(0.95 * len(ordered)) - 1)]
    print(
        f"  {label:<30} p50 {statistics.median(ordered):7.2f} ms  p95 {p95:7.2f} ms"
        f"  max {ordered[-1]:7.2f} ms  ({'meets' if p95 < goal_ms else 'MISSES'} < {goal_ms:.0f})"
        f"  matches: median {statistics.median(totals):.0f}",
        flush=True,
    )


def run(db: Db, label: str, rows_count: int, numbers: list[str], runs: int) -> None:
    catalogue = Catalogue(db)
    goal_ms = 50.0 if rows_count <= 1_000_000 else 150.0
    batches = queries(numbers, runs)
    for batch in batches.values():  # warm the caches
        measure(catalogue, batch[:5])
    load = os.getloadavg()
    print(f"{label}, {rows_count:,} rows, {runs} runs each, load average "
          f"{load[0]:.2f} {load[1]:.2f} {load[2]:.2f} on {os.cpu_count()} CPUs")  # fmt: skip
    for name, batch in batches.items():
        report(name, *measure(catalogue, batch), goal_ms)
    load = os.getloadavg()
    print(f"  load average after: {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--runs", type=int, default=100)
    parser.add_argument("--backend", choices=("sqlite", "postgresql"), action="append")
    parser.add_argument("--keep", type=Path, help="SQLite: build (or reuse) the file here")
    parser.add_argument(
        "--url",
        help=(
            "PostgreSQL: an empty database to fill, or one this bench filled with --rows rows"
            " (reused); else a local throwaway server"
        ),
    )
    args = parser.parse_args()
    numbers = pool()
    print(f"measured at {datetime.now(UTC).isoformat(timespec='seconds')}")
    for backend in args.backend or ["sqlite", "postgresql"]:
        started = time.perf_counter()
        if backend == "sqlite":
            folder = tempfile.TemporaryDirectory()
            path = args.keep or Path(folder.name) / "state.sqlite3"
            reused = path.exists()
            if not reused:
                build_sqlite(path, args.rows, numbers)
            built = "reused" if reused else f"built in {time.perf_counter() - started:.0f} s"
            print(f"SQLite {path} ({path.stat().st_size / 2**20:.0f} MiB), {built}")
            db = open_database(path)
            try:
                run(db, "SQLite", args.rows, numbers, args.runs)
            finally:
                db.close()
        else:
            run_postgres(args.url, args.rows, numbers, args.runs)


def run_postgres(url: str | None, count: int, numbers: list[str], runs: int) -> None:
    from archiver.lab.postgres import LocalPostgres
    from archiver.state.pg_state import connect_postgres

    with LocalPostgres() if url is None else _Given(url) as server:
        target = server.create_database() if url is None else url
        db = connect_postgres(target, None, {}, pool_size=2, outage_s=10)
        try:
            started = time.perf_counter()
            if url is not None and Catalogue(db).count() == count:
                print(f"PostgreSQL: reusing the {count:,} rows already at --url")
            else:
                build_postgres(target, count, numbers)
                print(f"PostgreSQL: {count:,} rows loaded in {time.perf_counter() - started:.0f} s")
            run(db, "PostgreSQL", count, numbers, runs)
        finally:
            db.close()


class _Given:
    def __init__(self, url: str) -> None:
        self.url = url

    def __enter__(self) -> _Given:
        return self

    def __exit__(self, *exc: object) -> None:
        return None

    def create_database(self) -> str:
        return self.url


if __name__ == "__main__":
    main()
