"""`archiver verify [--sample PERCENT] [--since DATE] [--json] [--metrics-file PATH]`: re-read
archived objects and report each whose bytes no longer match what the state recorded when it
was verified (bit rot, tampering). Exit 0 when every object read matches, 3 when one does not or
is gone, 5 when the bucket could not be read at all."""

from __future__ import annotations

import argparse
import json
import time
from datetime import date, datetime
from pathlib import Path
from typing import Any

from archiver.commands._shared import existing_state, load, open_store
from archiver.exits import EXIT_OK, EXIT_SOME_FAILED, EXIT_UNREACHABLE

__all__ = ["add_parser"]


def _percent(text: str) -> float:
    value = float(text)
    if not 0 < value <= 100:
        raise argparse.ArgumentTypeError("a percentage from 0 (excluded) to 100")
    return value


def add_parser(sub: Any, common: argparse.ArgumentParser) -> None:
    verify = sub.add_parser(
        "verify", parents=[common], help="re-read archived objects against the catalogue"
    )
    verify.add_argument(
        "--sample",
        type=_percent,
        default=100.0,
        metavar="PERCENT",
        help="check this share of the objects, drawn at random (default 100)",
    )
    verify.add_argument(
        "--since",
        type=date.fromisoformat,
        metavar="YYYY-MM-DD",
        help="only calls that started on or after this day (PBX local)",
    )
    verify.add_argument("--json", action="store_true", help="one JSON document")
    verify.add_argument(
        "--metrics-file",
        type=Path,
        metavar="PATH",
        help="write the result as Prometheus metrics (node_exporter textfile)",
    )
    verify.set_defaults(handler=_cmd_verify)


def _write_metrics(path: Path, checked: int, damaged: int, unreadable: int) -> None:
    from prometheus_client import CollectorRegistry, Gauge, write_to_textfile

    registry = CollectorRegistry()
    values = {
        "archiver_verify_checked_objects": ("objects re-read by the last archiver verify", checked),
        "archiver_verify_damaged_objects": (
            "objects whose bytes no longer match the catalogue, or gone, in the last run",
            damaged,
        ),
        "archiver_verify_unreadable_objects": ("objects the last run could not read", unreadable),
        "archiver_verify_last_run_timestamp_seconds": ("when the last run ended", time.time()),
    }
    for name, (text, value) in values.items():
        Gauge(name, text, registry=registry).set(value)
    write_to_textfile(str(path), registry)


def _cmd_verify(args: argparse.Namespace) -> int:
    from archiver.audit import verify_objects

    cfg = load(args)
    since = None
    if args.since is not None:
        tz = cfg.timezones[cfg.pbx[0].name]
        since = datetime.combine(args.since, datetime.min.time(), tz)
    store = open_store(cfg)
    if store is None:
        return EXIT_UNREACHABLE
    with existing_state(cfg) as state:
        report = verify_objects(store, state.fixity, since=since, sample_percent=args.sample)
    unreadable = report.count("unreadable")
    if args.metrics_file is not None:
        _write_metrics(args.metrics_file, report.checked, report.damaged, unreadable)
    if args.json:
        print(json.dumps({
            "checked": report.checked, "bytes_read": report.bytes_read,
            "damaged": report.damaged, "unreadable": unreadable,
            "unrecorded": report.count("unrecorded"),
            "findings": [{"key": f.object_key, "verdict": f.verdict, "detail": f.detail}
                         for f in report.findings],
        }, indent=2))  # fmt: skip
    else:
        for finding in report.findings:
            print(f"{finding.verdict.upper():<10} {finding.object_key}  {finding.detail}")
        print(
            f"{report.checked} object(s) re-read ({report.bytes_read} bytes,"
            f" {args.sample:g}% sample): {report.damaged} damaged or missing,"
            f" {unreadable} unreadable, {report.count('unrecorded')} without a recorded MD5"
        )
    if report.damaged or unreadable:
        return EXIT_SOME_FAILED
    return EXIT_OK
