"""Search latency of the catalogue (what `archiver web` and its JSON API run), over N synthetic
rows in a real SQLite file.

    .venv/bin/python bench/search.py [--rows 1000000] [--runs 200] [--keep PATH]

Rows are spread over two years (2025-2026, Istanbul time), 2 PBXs, 4 trunks; callers from a
pool of 20,000 numbers (so one number has ~35 calls), callees extensions or numbers. Two
searches, each `Catalogue.search` as the page runs it (the page of 50 newest first AND the total
count): a number (in its national spelling) within one month, and a whole year with no other
filter. Prints p50/p95/max in ms. Goal: p95 < 50 ms on this machine.
"""

from __future__ import annotations

import argparse
import random
import statistics
import tempfile
import time
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

from archiver.state.catalogue import Catalogue, SearchQuery, number_key
from archiver.state.migrate import open_database

IST = ZoneInfo("Europe/Istanbul")
START = datetime(2025, 1, 1, tzinfo=IST)
SPAN_S = 2 * 365 * 86400
POOL = 20_000  # callers: ~35 calls per number over the two years


def build(path: Path, rows: int, seed: int = 1) -> list[str]:
    """Fill the catalogue at `path` with `rows` rows; return the caller pool."""
    rng = random.Random(seed)
    pool = [f"90{rng.choice('2345')}{rng.randrange(10**8, 10**9)}" for _ in range(POOL)]
    db = open_database(path).connection
    db.execute("PRAGMA synchronous=OFF")  # building a bench file, not guarding one
    archived_s = time.time()
    batch: list[tuple[object, ...]] = []
    columns = (
        "object_key, recording_key, pbx, trunk, caller, callee, caller_number, callee_number,"
        " started_local, started_utc_s, duration_s, size_bytes, dial_status, autocall_id,"
        " source_name, archived_at_s"
    )
    insert = f"INSERT INTO catalogue ({columns}) VALUES ({', '.join('?' * 16)})"  # noqa: S608
    for index in range(rows):
        started = START + timedelta(seconds=rng.randrange(SPAN_S))
        caller = rng.choice(pool)
        callee = str(rng.randrange(100, 200)) if rng.random() < 0.7 else rng.choice(pool)
        name = f"{started:%Y%m%d-%H%M%S}-{caller}-{callee}-{1700000000 + index}.{index}-60.gsm"
        pbx = "pbx" if index % 3 else "branch"
        key = f"recordings/{pbx}/{started:%Y/%m/%d}/{name[:-4]}.mp3"
        batch.append((
            key, f"{pbx}/trunk-{index % 4}/{name}", pbx, f"trunk-{index % 4}", caller, callee,
            number_key(caller), number_key(callee), started.isoformat(),
            int(started.timestamp()), rng.randrange(5, 900), rng.randrange(10_000, 4_000_000),
            None, None, name, archived_s,
        ))  # fmt: skip
        if len(batch) == 50_000:
            db.execute("BEGIN")
            db.executemany(insert, batch)
            db.execute("COMMIT")
            batch.clear()
    if batch:
        db.execute("BEGIN")
        db.executemany(insert, batch)
        db.execute("COMMIT")
    db.execute("ANALYZE")
    db.close()
    return pool


def measure(catalogue: Catalogue, queries: list[SearchQuery]) -> tuple[list[float], list[int]]:
    times_ms: list[float] = []
    totals: list[int] = []
    for query in queries:
        started = time.perf_counter()
        page = catalogue.search(query)
        times_ms.append((time.perf_counter() - started) * 1000)
        totals.append(page.total)
    return times_ms, totals


def report(label: str, times_ms: list[float], totals: list[int]) -> None:
    ordered = sorted(times_ms)
    p95 = ordered[max(0, round(0.95 * len(ordered)) - 1)]
    print(
        f"{label:<28} runs {len(ordered):>4}  p50 {statistics.median(ordered):7.2f} ms"
        f"  p95 {p95:7.2f} ms  max {ordered[-1]:7.2f} ms"
        f"  (matches per search: median {statistics.median(totals):.0f})"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--runs", type=int, default=200)
    parser.add_argument("--keep", type=Path, help="build (or reuse) the SQLite file here")
    args = parser.parse_args()
    folder = tempfile.TemporaryDirectory()
    path = args.keep or Path(folder.name) / "state.sqlite3"
    started = time.perf_counter()
    if path.exists():
        rng = random.Random(1)
        pool = [f"90{rng.choice('2345')}{rng.randrange(10**8, 10**9)}" for _ in range(POOL)]
    else:
        pool = build(path, args.rows)
    built = "reused" if args.keep and time.perf_counter() - started < 1 else (
        f"built in {time.perf_counter() - started:.1f} s")  # fmt: skip
    print(f"catalogue: {path} ({path.stat().st_size / 2**20:.0f} MiB), {built}")
    db = open_database(path)
    catalogue = Catalogue(db)
    rng = random.Random(2)
    by_number: list[SearchQuery] = []
    for _ in range(args.runs):
        month = date(rng.choice((2025, 2026)), rng.randrange(1, 13), 1)
        following = (month + timedelta(days=32)).replace(day=1)
        number = rng.choice(pool)
        by_number.append(SearchQuery(
            number=f"0{number[2:5]} {number[5:8]} {number[8:10]} {number[10:]}",
            since=datetime(month.year, month.month, 1, tzinfo=IST),
            until=datetime(following.year, following.month, 1, tzinfo=IST),
        ))  # fmt: skip
    year = [
        SearchQuery(since=datetime(2026, 1, 1, tzinfo=IST), until=datetime(2027, 1, 1, tzinfo=IST))
    ] * args.runs
    measure(catalogue, by_number[:10] + year[:3])  # warm the page cache
    report("number + one month", *measure(catalogue, by_number))
    report("whole year (2026)", *measure(catalogue, year))
    second_page = catalogue.search(year[0]).next_cursor
    page_two = SearchQuery(since=year[0].since, until=year[0].until, cursor=second_page)
    report("whole year, page 2", *measure(catalogue, [page_two] * args.runs))
    print(f"measured at {datetime.now(UTC).isoformat(timespec='seconds')}")
    db.close()


if __name__ == "__main__":
    main()
