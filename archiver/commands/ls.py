"""`archiver ls`: what a PBX lists, parsed."""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from dataclasses import asdict
from datetime import date, datetime
from typing import Any
from zoneinfo import ZoneInfo

import structlog

from archiver.commands._shared import (
    DATES,
    day,
    load,
)
from archiver.config import Config
from archiver.exits import (
    EXIT_CONFIG,
    EXIT_OK,
    EXIT_UNREACHABLE,
)
from archiver.names import RECORDING_ROOT

__all__ = ["add_parser"]

log = structlog.get_logger("archiver")


def add_parser(sub: Any, common: argparse.ArgumentParser) -> None:
    ls = sub.add_parser(
        "ls", parents=[common], help="list recordings the PBX has (parsed)", epilog=DATES
    )
    ls.add_argument(
        "--date", type=day, metavar="YYYY-MM-DD", help="a day (default: today, PBX time)"
    )
    what = ls.add_mutually_exclusive_group()
    what.add_argument("--pattern", help="a find pattern instead, e.g. 100-903123320404")
    what.add_argument("--folders", action="store_true", help="the recording folders (trunks)")
    what.add_argument("--folder", metavar="NAME", help="the recordings in one folder")
    ls.add_argument("--pbx", metavar="NAME", help="which PBX (default: the first)")
    ls.add_argument("--json", action="store_true")
    ls.set_defaults(handler=_cmd_ls)


def _cmd_ls(args: argparse.Namespace) -> int:
    cfg = load(args)
    return asyncio.run(_ls(cfg, args))


async def _ls(cfg: Config, args: argparse.Namespace) -> int:
    """List through the documented commands only: `find` (a day or a pattern), or
    `list_files` of the recording root (`--folders`) or of one folder (`--folder NAME`)."""
    from archiver.credentials import pbx_password
    from archiver.pbx import PbxClient, PbxError, date_pattern
    from archiver.pipeline import parse_listing

    pbx = cfg.pbx_named(args.pbx) if args.pbx else cfg.pbx[0]
    tz = ZoneInfo(pbx.timezone)
    day = args.date or _today(tz)
    try:
        client = PbxClient(pbx, pbx_password(pbx))
        try:
            if args.folders:
                listing = await client.list_folders()
            elif args.folder is not None:
                listing = await client.list_files(args.folder)
            else:
                listing = await client.find(args.pattern or date_pattern(day))
        finally:
            await client.close()
    except ValueError as error:
        print(f"error: {error}", file=sys.stderr)
        return EXIT_CONFIG
    except PbxError as error:
        print(f"error: {error.reason}", file=sys.stderr)
        return EXIT_UNREACHABLE
    if args.folders:
        return _print_folders(listing.lines, as_json=args.json)
    lines = listing.lines
    if args.folder is not None:  # list_files prints bare names: make them the paths find prints
        lines = [f"{RECORDING_ROOT}{args.folder}/{line.strip()}" for line in lines]
    parsed = parse_listing(pbx.name, lines, tz)
    for line, reason in parsed.invalid:
        log.warning("invalid_name", line=ascii(line[:200]), reason=reason)
    invalid = len(parsed.invalid)
    rows: list[dict[str, Any]] = []
    for rec in parsed.recordings:
        row = asdict(rec)
        row["day"] = rec.day.isoformat()
        row["started_at"] = rec.started_at.isoformat()
        rows.append(row)
    if args.json:
        print(json.dumps({"recordings": rows, "invalid": invalid}, indent=2))
    else:
        for row in rows:
            print(f"{row['started_at']}  {row['caller'] or '-':>14} -> {row['callee'] or '-':<14}"
                  f"  {row['duration_s']:>5}s  {row['folder']}/{row['name']}")  # fmt: skip
        print(f"{len(rows)} recording(s), {invalid} invalid line(s)")
    return EXIT_OK


def _print_folders(lines: list[str], *, as_json: bool) -> int:
    """The folders that are plain trunk folder names (what `--folder` takes); others counted."""
    from archiver.pbx import list_files_command

    folders, invalid = [], 0
    for line in lines:
        name = line.strip()
        try:
            list_files_command(name)
        except ValueError:
            invalid += 1
            log.warning("invalid_folder", line=ascii(line[:200]))
            continue
        folders.append(name)
    if as_json:
        print(json.dumps({"folders": folders, "invalid": invalid}, indent=2))
    else:
        for name in folders:
            print(name)
        print(f"{len(folders)} folder(s), {invalid} invalid line(s)")
    return EXIT_OK


def _today(tz: ZoneInfo) -> date:
    return datetime.now(tz).date()
