"""Compliance costs, printed with the load average (a shared machine: ratios, not promises):

.venv/bin/python bench/audit.py chain [--rows 200000]     access-log appends, chain verify,
                                                           one call's history (SQLite)
.venv/bin/python bench/audit.py objects [--objects 400]   archiver verify and a court export
                                                           of 240 KB objects on SeaweedFS
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import os
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

from archiver.audit import CaseReference, ExportRequest, verify_objects, write_export
from archiver.config import S3Config
from archiver.lab.seaweed import SeaweedS3
from archiver.names import parse_name
from archiver.s3 import S3Store
from archiver.state import Catalogue, Fixity, Ledger, SearchQuery, catalogue_entry
from archiver.state.access import AccessEvent, AccessLog
from archiver.state.migrate import open_database

IST = ZoneInfo("Europe/Istanbul")
SIZE = 240 * 1024


def chain(rows: int) -> None:
    with tempfile.TemporaryDirectory() as folder:
        log = AccessLog(open_database(Path(folder) / "s.sqlite3"))
        base = datetime.now(UTC)
        started = time.perf_counter()
        for n in range(rows):
            log.record(AccessEvent(base + timedelta(seconds=n), "ayse", "play", "ok", "10.0.0.1",
                                   object_key=f"recordings/pbx/{n}.mp3",
                                   byte_range="bytes 0-99/100"))  # fmt: skip
        appended = time.perf_counter()
        report = log.verify()
        verified = time.perf_counter()
        log.events(object_key=f"recordings/pbx/{rows // 2}.mp3")
        looked = time.perf_counter()
    print(
        f"sqlite: {rows} appends in {appended - started:.2f} s"
        f" ({rows / (appended - started):.0f}/s); verify {report.rows} rows in"
        f" {verified - appended:.2f} s ({report.rows / (verified - appended):.0f} rows/s);"
        f" one call's history {1000 * (looked - verified):.1f} ms; load {os.getloadavg()}"
    )


def objects(count: int) -> None:
    with tempfile.TemporaryDirectory() as folder, SeaweedS3(Path(folder) / "weed") as weed:
        weed.create_bucket("bench")
        os.environ.update(weed.aws_env())
        store = S3Store(S3Config(bucket="bench", endpoint_url=weed.endpoint_url,
                                 region="us-east-1", addressing_style="path"))  # fmt: skip
        db = open_database(Path(folder) / "s.sqlite3")
        ledger = Ledger(db)
        base = datetime(2026, 3, 1, 9, tzinfo=IST)
        for n in range(count):
            at = base + timedelta(minutes=n)
            name = f"{at:%Y%m%d-%H%M%S}-100-903123320404-{int(at.timestamp())}.{n}-60.gsm"
            rec = parse_name("pbx", "t", name, IST)
            data, key = os.urandom(SIZE), f"recordings/pbx/{n:05d}.mp3"
            store.put_bytes(key, data)
            md5 = base64.b64encode(hashlib.md5(data, usedforsecurity=False).digest()).decode()
            entry = catalogue_entry(rec, object_key=key, size_bytes=SIZE)
            ledger.restore(rec, "verified", object_key=key, source_sha256="0" * 64,
                           mp3_md5=md5, mp3_bytes=SIZE, catalogue=entry)  # fmt: skip
        started = time.perf_counter()
        report = verify_objects(store, Fixity(db))
        took = time.perf_counter() - started
        megabytes = report.bytes_read / 1e6
        print(f"archiver verify: {report.checked} objects, {megabytes:.1f} MB in {took:.2f} s ="
              f" {megabytes / took:.1f} MB/s, {report.checked / took:.0f} objects/s;"
              f" load {os.getloadavg()}")  # fmt: skip
        entries = list(Catalogue(db).search(SearchQuery(limit=500)).items)
        request = ExportRequest("bench", "compliance", CaseReference.parse("B-1"), "",
                                "everything", datetime.now(IST))  # fmt: skip
        path = Path(folder) / "export.zip"
        started = time.perf_counter()
        expected = Fixity(db).of_keys([e.object_key for e in entries])
        with path.open("wb") as sink:
            summary = write_export(sink, store, entries, expected, request)
        took = time.perf_counter() - started
        size = path.stat().st_size / 1e6
        print(f"court export: {len(summary.rows)} MP3s, {size:.1f} MB zip in {took:.2f} s ="
              f" {size / took:.1f} MB/s; load {os.getloadavg()}")  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("what", choices=["chain", "objects"])
    parser.add_argument("--rows", type=int, default=200_000)
    parser.add_argument("--objects", type=int, default=400)
    args = parser.parse_args()
    if args.what == "chain":
        chain(args.rows)
    else:
        objects(args.objects)


if __name__ == "__main__":
    main()
