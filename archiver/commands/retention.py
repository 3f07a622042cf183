"""`archiver retention run [--dry-run] [--json] [--yes] [--force]` destroys every recording past
its `[[retention]]` rule's keep_days that no hold covers; `archiver retention report --from DATE
--to DATE [--csv] [--json]` lists the destructions done in a period (a KVKK destruction report).

Exit codes: 0 every expired, unheld recording destroyed (held ones kept is normal); 3 some could
not be, or the run stopped at `[destruction] max_per_run`; 4 stopped by a signal (run it again:
it finishes what it started); 5 S3 unreachable; 2 a bad command line or no terminal to confirm
on without --yes.
"""

from __future__ import annotations

import argparse
import csv
import json
import sys
from collections.abc import Sequence
from dataclasses import asdict
from datetime import UTC, date, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from archiver.commands._lifecycle import (
    confirm_or_refuse,
    entry_line,
    exit_for,
    outcome_json,
    outcome_text,
    signals_stop,
)
from archiver.commands._shared import day, existing_state, load, open_store
from archiver.config import Config
from archiver.exits import (
    EXIT_OK,
    EXIT_SOME_FAILED,
    EXIT_UNREACHABLE,
    EXIT_USAGE,
)

__all__ = ["add_parser"]

COMMAND = "archiver retention run"


def add_parser(sub: Any, common: argparse.ArgumentParser) -> None:
    retention = sub.add_parser(
        "retention",
        help="destroy what the retention rules expired; report destructions",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    inner = retention.add_subparsers(dest="retention_command", metavar="ACTION", required=True)
    run = inner.add_parser(
        "run",
        parents=[common],
        help="destroy every recording past its rule's keep_days that no hold covers",
    )
    run.add_argument("--dry-run", action="store_true", help="show what would be destroyed")
    run.add_argument("--json", action="store_true", help="one JSON document")
    run.add_argument("--yes", action="store_true", help="do not ask (scripts, the daemon)")
    run.add_argument(
        "--force",
        action="store_true",
        help="with --yes: go on although more than [destruction] max_per_run are due",
    )
    run.set_defaults(handler=_run)
    report = inner.add_parser(
        "report", parents=[common], help="the destructions done from --from to --to"
    )
    report.add_argument("--from", dest="first", type=day, required=True, metavar="YYYY-MM-DD")
    report.add_argument("--to", dest="last", type=day, required=True, metavar="YYYY-MM-DD")
    shape = report.add_mutually_exclusive_group()
    shape.add_argument("--csv", action="store_true", help="CSV, one row per destruction")
    shape.add_argument("--json", action="store_true", help="one JSON document")
    report.set_defaults(handler=_report)


def _plan_text(plan: Any, *, heading: str) -> None:
    print(f"{heading}: {plan.checked} archived recording(s) looked at, {len(plan.due)} to "
          f"destroy, {len(plan.kept)} kept")  # fmt: skip
    for target in plan.due:
        print(f"  destroy  {entry_line(target.entry)}  {target.basis}")
    for kept in plan.kept:
        print(f"  keep     {entry_line(kept.entry)}  {kept.why}")
    if plan.waiting:
        print(f"  {plan.waiting} past keep_days but still locked in the store ([s3] retain_days)")


def _run(args: argparse.Namespace) -> int:
    from archiver.retention import Rules, execute, plan_retention, record_stopped

    cfg = load(args)
    if not cfg.retention:
        print("warning: no [[retention]] rule: recordings are kept forever, nothing to destroy",
              file=sys.stderr)  # fmt: skip
    with existing_state(cfg) as state:
        plan = plan_retention(state, Rules(cfg.retention, cfg.s3), datetime.now(UTC))
        if args.dry_run:
            if args.json:
                print(json.dumps(outcome_json(plan, None, "dry_run"), indent=2))
            else:
                _plan_text(plan, heading="retention run (dry run)")
            return EXIT_OK
        limit = cfg.destruction.max_per_run
        if len(plan.due) > limit and not (args.yes and args.force):
            record_stopped(state, plan, command=COMMAND, limit=limit)
            print(f"error: {len(plan.due)} recordings are due, more than [destruction] "
                  f"max_per_run {limit}: nothing destroyed. Check the [[retention]] rules; if "
                  "they are right, run again with --yes --force", file=sys.stderr)  # fmt: skip
            return EXIT_SOME_FAILED
        if not args.json and (plan.due or plan.kept):
            _plan_text(plan, heading="retention run")
        if plan.due:
            refused = confirm_or_refuse(f"Destroy {len(plan.due)} recording(s)?", yes=args.yes)
            if refused is not None:
                return refused
        store = open_store(cfg)
        if store is None:
            return EXIT_UNREACHABLE
        with signals_stop() as stop:
            result = execute(state, store, plan, command=COMMAND, stop=stop.is_set)
    if args.json:
        print(json.dumps(outcome_json(plan, result.outcome, result.outcome_word), indent=2))
    else:
        outcome_text(result.outcome, result.outcome_word)
    return exit_for(result.outcome)


_REPORT_COLUMNS = (
    "destroyed_at", "day", "recording_key", "object_key", "pbx", "source_name", "source_sha256",
    "caller", "callee", "started_at", "reason", "basis", "command", "username", "versions",
)  # fmt: skip


def _report_zone(cfg: Config) -> ZoneInfo:
    return ZoneInfo(cfg.web.timezone or cfg.pbx[0].timezone)


def _report(args: argparse.Namespace) -> int:
    if args.last < args.first:
        print(f"error: --to {args.last} is before --from {args.first}", file=sys.stderr)
        return EXIT_USAGE
    cfg = load(args)
    zone = _report_zone(cfg)
    since = datetime.combine(args.first, time(), zone)
    until = datetime.combine(args.last + timedelta(days=1), time(), zone)
    with existing_state(cfg) as state:
        done = state.destructions.between(since, until)
        chain = state.destructions.verify()
    rows = [_report_row(d, zone) for d in done]
    per_day: dict[str, int] = {}
    for row in rows:
        per_day[row["day"]] = per_day.get(row["day"], 0) + 1
    if args.csv:
        writer = csv.writer(sys.stdout, lineterminator="\n")
        writer.writerow(_REPORT_COLUMNS)
        writer.writerows([[row[c] for c in _REPORT_COLUMNS] for row in rows])
        return EXIT_OK
    chain_doc = {
        "rows": chain.rows,
        "intact": chain.intact,
        "last_hash": chain.last_hash,
        "first_break": None if chain.first_break is None else asdict(chain.first_break),
    }
    if args.json:
        print(json.dumps({"from": args.first.isoformat(), "to": args.last.isoformat(),
                          "timezone": str(zone), "destructions": rows, "per_day": per_day,
                          "chain": chain_doc}, indent=2))  # fmt: skip
        return EXIT_OK
    _report_text(args.first, args.last, zone, rows, per_day, chain_doc)
    return EXIT_OK


def _report_row(done: Any, zone: ZoneInfo) -> dict[str, Any]:
    at = done.at.astimezone(zone)
    return {
        "destroyed_at": at.isoformat(timespec="seconds"),
        "day": at.date().isoformat(),
        "recording_key": done.recording_key,
        "object_key": done.object_key,
        "pbx": done.pbx,
        "source_name": done.source_name,
        "source_sha256": done.source_sha256 or "",
        "caller": done.caller,
        "callee": done.callee,
        "started_at": done.started_at,
        "reason": done.reason,
        "basis": done.basis,
        "command": done.command,
        "username": done.username,
        "versions": done.versions,
    }


def _report_text(first: date, last: date, zone: ZoneInfo, rows: Sequence[dict[str, Any]],
                 per_day: dict[str, int], chain: dict[str, Any]) -> None:  # fmt: skip
    print(f"destructions from {first} to {last} ({zone}): {len(rows)}")
    for row in rows:
        print(f"{row['destroyed_at']}  {row['reason']:<9}  {row['basis']}  by {row['username']} "
              f"({row['command']})")  # fmt: skip
        parties = f"{row['caller'] or '-'} -> {row['callee'] or '-'}"
        print(f"    {row['object_key']}  {parties}  started {row['started_at']}  "
              f"source sha256 {row['source_sha256'] or '-'}")  # fmt: skip
    for name, count in sorted(per_day.items()):
        print(f"day {name}: {count}")
    state = "intact" if chain["intact"] else f"BROKEN at row {chain['first_break']['row_id']}"
    print(f"destruction log: {chain['rows']} row(s), hash chain {state}")
