"""`archiver backfill`: archive a range of past days (with --dry-run: what that would do)."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import sys
from datetime import date, timedelta
from typing import Any

import structlog

from archiver.commands._shared import (
    DATES,
    day,
    finish,
    load,
    progress,
)
from archiver.config import Config
from archiver.exits import (
    EXIT_UNREACHABLE,
    EXIT_USAGE,
)

__all__ = ["add_parser"]

log = structlog.get_logger("archiver")


def add_parser(sub: Any, common: argparse.ArgumentParser) -> None:
    backfill = sub.add_parser(
        "backfill",
        parents=[common],
        help="archive a range of past days",
        description="Archive every recording of the days --from to --to (both included) that is "
        "not archived yet. Safe next to a running `archiver run`: each process has its own work "
        "files, and the ledger is shared.",
        epilog=DATES,
    )
    backfill.add_argument(
        "--from", dest="first", type=day, required=True, metavar="YYYY-MM-DD", help="first day"
    )
    backfill.add_argument(
        "--to", dest="last", type=day, metavar="YYYY-MM-DD", help="last day (default: --from)"
    )
    backfill.add_argument("--pbx", metavar="NAME", help="only this PBX (default: all)")
    backfill.add_argument(
        "--dry-run",
        action="store_true",
        help="list the days and print, per day and in total, what would be archived "
        "(recordings, estimated source bytes, audio hours) and an estimate of the time it takes; "
        "downloads, stores and records nothing",
    )
    backfill.set_defaults(handler=_cmd_backfill, logs_to_stdout=True)


def _cmd_backfill(args: argparse.Namespace) -> int:
    cfg = load(args)
    last = args.last or args.first
    if last < args.first:
        print(f"error: --to {last} is before --from {args.first}", file=sys.stderr)
        return EXIT_USAGE
    days = [args.first + timedelta(days=n) for n in range((last - args.first).days + 1)]
    names = [args.pbx] if args.pbx else [pbx.name for pbx in cfg.pbx]
    plan = {cfg.pbx_named(name).name: days for name in names}
    if args.dry_run:
        from archiver.pipeline import dry_run

        return dry_run(cfg, plan)
    return asyncio.run(_backfill(cfg, plan))


async def _backfill(cfg: Config, plan: dict[str, list[date]]) -> int:
    from archiver.pipeline import archive_until_signalled, open_archiver, store_ready
    from archiver.state import open_state

    with contextlib.closing(open_state(cfg)) as state:
        async with open_archiver(cfg, state) as archiver:
            if not await store_ready(archiver):
                return EXIT_UNREACHABLE
            async with progress(archiver):
                report = await archive_until_signalled(archiver, plan)
    return finish(report)
