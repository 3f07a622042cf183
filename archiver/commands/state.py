"""`archiver state`: the state's own housekeeping (`state copy`, `state backup`)."""

from __future__ import annotations

import argparse
import contextlib
import sys
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import structlog

from archiver.commands._shared import load
from archiver.config import (
    ConfigError,
    config_path,
    load_config,
)
from archiver.exits import (
    EXIT_CONFIG,
    EXIT_LOCAL,
    EXIT_OK,
)

__all__ = ["add_parser"]

log = structlog.get_logger("archiver")


def add_parser(sub: Any, common: argparse.ArgumentParser) -> None:
    state = sub.add_parser("state", help="the state's own housekeeping")
    state_sub = state.add_subparsers(dest="state_command", metavar="STATE_COMMAND", required=True)
    copy = state_sub.add_parser(
        "copy", parents=[common], help="copy a SQLite state into PostgreSQL (idempotent)"
    )
    copy.add_argument("--from", dest="source", type=Path, required=True, help="the SQLite file")
    copy.add_argument(
        "--to",
        dest="target",
        help="postgresql://USER@HOST/DB (default: [state] url, with its password source; "
        "otherwise libpq's PGPASSWORD or ~/.pgpass)",
    )
    copy.set_defaults(handler=_cmd_state_copy)
    backup = state_sub.add_parser(
        "backup",
        parents=[common],
        help="copy the SQLite state consistently, while archiver runs",
        description="Copy the SQLite state ([state] path) to FILE with SQLite's online backup "
        "API: consistent while `archiver run` keeps writing, checked, one self-contained file. "
        "For PostgreSQL use pg_dump (README, 'Backup and restore').",
    )
    backup.add_argument("--to", dest="target", type=Path, required=True, metavar="FILE")
    backup.add_argument("--force", action="store_true", help="replace FILE if it exists")
    backup.set_defaults(handler=_cmd_state_backup)


def _cmd_state_copy(args: argparse.Namespace) -> int:
    from archiver.logs import register_secret
    from archiver.state import (
        connect_postgres,
        copy_state,
        latest_version,
        migrated_snapshot,
        redact_url,
    )

    if not args.source.is_file():
        print(f"error: {args.source}: no such SQLite file", file=sys.stderr)
        return EXIT_CONFIG
    target, password, tls = _copy_target(args)
    if target is None:
        print("error: give --to postgresql://... or set [state] url in the config", file=sys.stderr)
        return EXIT_CONFIG
    shown = redact_url(target)
    if shown != target:  # a password typed into the URL: keep it out of every log line too
        register_secret(target)
    db = connect_postgres(target, password, tls, pool_size=2, outage_s=10.0)
    try:
        # From a consistent snapshot at today's schema: a state an older release wrote lacks
        # tables (the catalogue) that its migration fills; the file itself stays as it is.
        with tempfile.TemporaryDirectory(prefix="archiver-copy-") as folder:
            source, version = migrated_snapshot(args.source, Path(folder), timezones=_zones(args))
            with contextlib.closing(source):
                copied = copy_state(source, db)
    finally:
        db.close()
    if version < latest_version():
        print(f"{args.source} is at schema version {version}: copied from a snapshot migrated "
              f"to version {latest_version()} (the file itself is unchanged)")  # fmt: skip
    print(f"copied {args.source} -> {shown}")
    for table in copied:
        print(f"  {table.table:<14} {table.source_rows:>9} in the file, {table.copied:>9} copied,"
              f" {table.already_there:>9} already there")  # fmt: skip
    return EXIT_OK


def _cmd_state_backup(args: argparse.Namespace) -> int:
    from archiver.state import BackupRefused, backup_sqlite

    cfg = load(args)
    if cfg.state.url is not None:
        why = "[state] url is PostgreSQL: back it up with pg_dump (README, 'Backup and restore')"
        print(f"error: {why}; `archiver state backup` copies a SQLite state", file=sys.stderr)
        return EXIT_CONFIG
    try:
        report = backup_sqlite(cfg.state.path, args.target, force=args.force)
    except BackupRefused as refused:
        print(f"error: {refused.reason}", file=sys.stderr)
        return EXIT_LOCAL
    print(f"backed up {report.source} -> {report.target}: {report.size_bytes} bytes, schema "
          f"version {report.schema_version}, integrity ok, {report.seconds:.2f} s")  # fmt: skip
    for table, rows in report.rows:
        print(f"  {table:<20} {rows:>10} rows")
    return EXIT_OK


def _zones(args: argparse.Namespace) -> Mapping[str, ZoneInfo]:
    """The configured PBXs' time zones (none if the config does not load: `state copy --to`
    works without one), which date an old state's recordings as its migration files them."""
    try:
        return load_config(config_path(args.config)).timezones
    except ConfigError:
        return {}


def _copy_target(args: argparse.Namespace) -> tuple[str | None, str | None, dict[str, str]]:
    """Where `state copy` writes: --to (password from libpq's own sources) or the config's
    [state] url with its password and TLS settings."""
    from archiver.credentials import state_password
    from archiver.logs import register_secret

    try:
        cfg = load_config(config_path(args.config))
    except ConfigError:
        if args.target is None:
            raise
        return args.target, None, {}
    if args.target is not None and args.target != cfg.state.url:
        return args.target, None, {}
    if cfg.state.url is None:
        return None, None, {}
    password = state_password(cfg.state)
    if password:
        register_secret(password)
    return cfg.state.url, password, cfg.state.tls_options()
