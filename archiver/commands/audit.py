"""`archiver audit`: who played, downloaded, exported, searched or logged in, filtered as on the
web's audit page (`--user --number --key --action --from --to`, local dates), as text, JSON or
CSV; `archiver audit verify` walks the access log's hash chain (and the destruction log's) and
compares it with the day anchors in the bucket; `archiver audit anchor` writes those anchors (a
daily timer runs it)."""

from __future__ import annotations

import argparse
import json
import sys
from datetime import date, datetime, timedelta
from typing import TYPE_CHECKING, Any
from zoneinfo import ZoneInfo

from archiver.commands._shared import existing_state, load
from archiver.config import Config
from archiver.exits import EXIT_OK, EXIT_SOME_FAILED, EXIT_UNREACHABLE

if TYPE_CHECKING:
    from archiver.state import ChainReport

__all__ = ["ACTIONS", "add_parser"]

# The access log's actions (archiver.state.ACCESS_ACTIONS, its Literal type), written out so that
# parsing `--action` loads no state driver; tests/test_cli_imports.py keeps the two equal.
ACTIONS = ("play", "download", "zip", "login", "logout", "search", "export", "audit")


def add_parser(sub: Any, common: argparse.ArgumentParser) -> None:
    audit = sub.add_parser(
        "audit", parents=[common], help="who played, downloaded, exported, searched, logged in"
    )
    audit.add_argument("--user", help="only this user")
    audit.add_argument("--number", help="calls of this number (any spelling) and searches for it")
    audit.add_argument("--key", help="only events about this call (its object key)")
    audit.add_argument("--action", choices=ACTIONS, help="only this action")
    audit.add_argument(
        "--from",
        dest="first",
        type=date.fromisoformat,
        metavar="YYYY-MM-DD",
        help="from this day on (local: [web] timezone or the first PBX's)",
    )
    audit.add_argument("--since", dest="first", type=date.fromisoformat, help=argparse.SUPPRESS)
    audit.add_argument("--to", dest="last", type=date.fromisoformat, metavar="YYYY-MM-DD",
                       help="up to and including this day (local)")  # fmt: skip
    audit.add_argument("--limit", type=int, default=100_000, help="at most this many (latest)")
    shape = audit.add_mutually_exclusive_group()
    shape.add_argument("--json", action="store_true", help="one JSON document")
    shape.add_argument("--csv", action="store_true", help="CSV with a header line")
    audit.set_defaults(handler=_cmd_list)
    actions = audit.add_subparsers(dest="audit_command", metavar="[verify | anchor]")
    verify = actions.add_parser(
        "verify",
        parents=[common],
        help="check the access log's hash chain and the bucket's anchors",
    )
    verify.add_argument("--json", action="store_true")
    verify.add_argument("--no-anchors", action="store_true",
                        help="check the chain only, not the day anchors in the bucket")  # fmt: skip
    verify.set_defaults(handler=_cmd_verify)
    anchor = actions.add_parser(
        "anchor", parents=[common], help="write each finished day's last chain hash to the bucket"
    )
    anchor.set_defaults(handler=_cmd_anchor)


def local_zone(cfg: Config) -> ZoneInfo:
    """The zone local dates are read in: `[web] timezone`, else the first PBX's."""
    return ZoneInfo(cfg.web.timezone or cfg.pbx[0].timezone)


def _cmd_list(args: argparse.Namespace) -> int:
    from archiver.audit import event_record, events_csv
    from archiver.state import InvalidQuery, search_number

    cfg = load(args)
    tz = local_zone(cfg)
    if args.first and args.last and args.last < args.first:
        print("error: --to is before --from", file=sys.stderr)
        return 2
    since = None if args.first is None else datetime.combine(args.first, datetime.min.time(), tz)
    until = None
    if args.last is not None:
        until = datetime.combine(args.last + timedelta(days=1), datetime.min.time(), tz)
    number = None
    if args.number is not None:
        try:
            number = search_number(args.number)
        except InvalidQuery as error:
            print(f"error: --number: {error.reason}", file=sys.stderr)
            return 2
    # The configured state, SQLite or PostgreSQL; never created by a read.
    with existing_state(cfg) as state:
        events = state.access_log.events(
            since=since, until=until, username=args.user, action=args.action,
            object_key=args.key, number=number, limit=args.limit,
        )  # fmt: skip
    if args.json:
        print(json.dumps({"timezone": str(tz), "events": [event_record(e, tz) for e in events]},
                         indent=2))  # fmt: skip
        return EXIT_OK
    if args.csv:
        sys.stdout.write(events_csv(events, tz))
        return EXIT_OK
    for event in events:
        # ascii(): names, addresses and ranges came from clients; show them as sent.
        what = event.object_key or (event.detail or "").strip() or "-"
        if event.object_keys:
            what = f"{len(event.object_keys)} calls, {(event.detail or '').strip()}"
        extra = f"  range={event.byte_range!a}" if event.byte_range else ""
        count = f"  count={event.item_count}" if event.item_count is not None else ""
        print(
            f"{event.at.astimezone(tz).isoformat(timespec='seconds')}  {event.username!a:<18} "
            f"{event.action:<8} {event.outcome:<9} {event.source!a:<17} {what!a}{extra}{count}"
        )
    print(f"{len(events)} event(s), times in {tz}")
    return EXIT_OK


def _cmd_verify(args: argparse.Namespace) -> int:
    from archiver.audit import check_anchors
    from archiver.s3 import S3Store, StoreError

    cfg = load(args)
    with existing_state(cfg) as state:
        report = state.access_log.verify()
        destructions = state.destructions.verify()
        anchors: dict[str, Any] = {"checked": None, "problems": [], "error": None}
        if not args.no_anchors:
            try:
                checked, problems = check_anchors(state.access_log, S3Store(cfg.s3))
                anchors.update(checked=checked,
                               problems=[{"day": p.day.isoformat(), "reason": p.reason}
                                         for p in problems])  # fmt: skip
            except StoreError as error:
                anchors["error"] = error.reason
    broken = report.first_break
    intact = broken is None and destructions.intact and not anchors["problems"]
    if args.json:
        print(json.dumps({
            "intact": intact, "rows": report.rows, "last_id": report.last_id,
            "last_hash": report.last_hash, "first_break": _break(report),
            "anchors": anchors,
            "destruction_log": {"rows": destructions.rows, "last_hash": destructions.last_hash,
                                "first_break": _break(destructions)},
        }, indent=2))  # fmt: skip
    else:
        for name, chain in (("access log", report), ("destruction log", destructions)):
            if chain.first_break is None:
                print(f"{name}: {chain.rows} rows, chain intact, last hash {chain.last_hash}")
            else:
                where = f"row {chain.first_break.row_id}: {chain.first_break.reason}"
                print(f"{name}: chain BROKEN at {where} ({chain.rows} rows before it verify)")
        if anchors["error"] is not None:
            print(f"day anchors: NOT CHECKED, the bucket could not be read: {anchors['error']}")
        elif anchors["checked"] is not None:
            print(f"day anchors: {anchors['checked']} in the bucket, "
                  f"{len(anchors['problems'])} disagree")  # fmt: skip
            for problem in anchors["problems"]:
                print(f"  {problem['day']}: {problem['reason']}")
    if not intact:
        return EXIT_SOME_FAILED
    return EXIT_UNREACHABLE if anchors["error"] is not None else EXIT_OK


def _break(report: ChainReport) -> dict[str, Any] | None:
    broken = report.first_break
    return None if broken is None else {"row_id": broken.row_id, "reason": broken.reason}


def _cmd_anchor(args: argparse.Namespace) -> int:
    from archiver.audit import AnchorLock, write_anchors
    from archiver.s3 import S3Store

    cfg = load(args)
    lock = None
    if cfg.s3.uses_object_lock:
        lock = AnchorLock(retain_days=cfg.s3.retain_days, mode=cfg.s3.retain_mode)
    with existing_state(cfg) as state:
        written = write_anchors(state.access_log, S3Store(cfg.s3), lock=lock)
    for anchor in written:
        print(f"wrote {anchor.key}: row {anchor.last_id}, {anchor.last_hash}")
    if not written:
        print("0 day anchors written: every finished day has one already (or the log is empty)")
    return EXIT_OK
