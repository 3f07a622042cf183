"""The `archiver` command: argument parsing and wiring, nothing else.

Exit codes are in `archiver.exits`; the text administrators read first is `_DESCRIPTION`.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import sys
import tempfile
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from dataclasses import asdict
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import structlog

from archiver import __version__
from archiver.calls import CALLBACK_STATS_KEY, add_call_parsers, add_callback_routes
from archiver.commands import add_parsers
from archiver.config import (
    Config,
    ConfigError,
    UnknownPbx,
    config_path,
    load_config,
    retention_warnings,
)
from archiver.credentials import (
    callbacks_token,
    pbx_password,
    readable_secret_files,
    state_password,
)
from archiver.exits import (
    EXIT_CODES,
    EXIT_CONFIG,
    EXIT_INTERRUPTED,
    EXIT_LOCAL,
    EXIT_OK,
    EXIT_SOME_FAILED,
    EXIT_UNREACHABLE,
    EXIT_USAGE,
)
from archiver.logs import configure_logging, register_secret
from archiver.names import RECORDING_ROOT
from archiver.pbx import PbxClient, PbxError, date_pattern, list_files_command
from archiver.pipeline import (
    Archiver,
    FfmpegNotFound,
    PollReport,
    WorkDirRefused,
    archive_until_signalled,
    find_ffmpeg,
    max_in_flight,
    open_archiver,
    parse_listing,
    reconcile,
    serve,
    store_ready,
)
from archiver.retention import DestroyedCounter, destroy_periodically
from archiver.s3 import S3Store, StoreError
from archiver.service import (
    DaemonFacts,
    Health,
    ListenError,
    Metrics,
    Notifier,
    ProgressBar,
    ProgressLog,
    Service,
    add_metrics_routes,
    build_http_app,
    check_pbxs,
    log_progress,
    ready_window_s,
    start_http,
)
from archiver.state import (
    SchemaTooNew,
    State,
    StateFileError,
    StateUnavailable,
    open_state,
)

__all__ = ["main"]

log = structlog.get_logger("archiver")

_DESCRIPTION = """\
Archive the call recordings of a ZYCOO CooVox / Asterisk PBX to S3 as verified MP3, exactly once.

`archiver run` is the daemon (systemd runs it); the other commands are for an administrator:
backfill past days, look at what a PBX lists, check the ledger, re-queue failures. Each takes
--config FILE (default: $ARCHIVER_CONFIG, then /etc/archiver/archiver.toml); `archiver
COMMAND --help` shows its options."""

_DATES = "Dates are YYYY-MM-DD (e.g. 2016-11-17), the PBX's local calendar day."


def _epilog() -> str:
    codes = "\n".join(f"  {code}  {meaning}" for code, meaning in EXIT_CODES)
    return f"{_DATES}\n\nexit codes:\n{codes}"


def main(argv: Sequence[str] | None = None) -> int:
    # Folders 0700 and files 0600 whatever the shell's umask: the ledger, its WAL, recordings
    # and MP3s in the work folder are for the service alone (admins run `backfill` from a shell).
    os.umask(0o077)
    argv = sys.argv[1:] if argv is None else list(argv)
    parser = _parser(argv)
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help(sys.stderr)
        return EXIT_USAGE
    # The daemon's logs go to stdout (journald); commands whose stdout is their answer log to
    # stderr so the answer stays parseable.
    configure_logging(
        level=args.log_level, stream=sys.stdout if args.logs_to_stdout else sys.stderr
    )
    handler: Callable[[argparse.Namespace], int] = args.handler
    try:
        return handler(args)
    except ConfigError as error:
        for problem in error.problems:
            print(problem, file=sys.stderr)
        return EXIT_CONFIG
    except _NAMED_FAILURES as error:
        # A condition we can name: one line that says what and how to fix it, no traceback.
        hint = " (see --pbx)" if isinstance(error, UnknownPbx) else ""
        print(f"error: {error}{hint}", file=sys.stderr)
        return next(code for kind, code in _EXIT_FOR if isinstance(error, kind))


# What each named failure exits with; the first match wins (StateFileError is a
# StateUnavailable: a missing file is this machine's problem, an unreachable database is not).
_EXIT_FOR: tuple[tuple[type[Exception], int], ...] = (
    (WorkDirRefused, EXIT_CONFIG),
    (SchemaTooNew, EXIT_CONFIG),
    (UnknownPbx, EXIT_USAGE),
    (ListenError, EXIT_LOCAL),
    (FfmpegNotFound, EXIT_LOCAL),
    (StateFileError, EXIT_LOCAL),
    (StateUnavailable, EXIT_UNREACHABLE),
)
_NAMED_FAILURES = tuple(kind for kind, _ in _EXIT_FOR)


def _parser(argv: Sequence[str]) -> argparse.ArgumentParser:
    """The parser for `argv`. The lab (the simulator's options) is imported only when `argv`
    names `simulate`: no product command loads test code."""
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--config", type=Path, help="TOML file (default: $ARCHIVER_CONFIG, then "
                        "/etc/archiver/archiver.toml)")  # fmt: skip
    levels = ["debug", "info", "warning", "error"]
    common.add_argument("--log-level", default="info", choices=levels)

    parser = argparse.ArgumentParser(
        prog="archiver",
        description=_DESCRIPTION,
        epilog=_epilog(),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"archiver {__version__}")
    parser.set_defaults(logs_to_stdout=False)
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    run = sub.add_parser("run", parents=[common], help="poll the PBXs and archive until stopped")
    run.add_argument("--once", action="store_true", help="one poll, drain it, exit")
    run.set_defaults(handler=_cmd_run, logs_to_stdout=True)

    backfill = sub.add_parser(
        "backfill",
        parents=[common],
        help="archive a range of past days",
        description="Archive every recording of the days --from to --to (both included) that is "
        "not archived yet. Safe next to a running `archiver run`: each process has its own work "
        "files, and the ledger is shared.",
        epilog=_DATES,
    )
    backfill.add_argument(
        "--from", dest="first", type=_day, required=True, metavar="YYYY-MM-DD", help="first day"
    )
    backfill.add_argument(
        "--to", dest="last", type=_day, metavar="YYYY-MM-DD", help="last day (default: --from)"
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

    ls = sub.add_parser(
        "ls", parents=[common], help="list recordings the PBX has (parsed)", epilog=_DATES
    )
    ls.add_argument(
        "--date", type=_day, metavar="YYYY-MM-DD", help="a day (default: today, PBX time)"
    )
    what = ls.add_mutually_exclusive_group()
    what.add_argument("--pattern", help="a find pattern instead, e.g. 100-903123320404")
    what.add_argument("--folders", action="store_true", help="the recording folders (trunks)")
    what.add_argument("--folder", metavar="NAME", help="the recordings in one folder")
    ls.add_argument("--pbx", metavar="NAME", help="which PBX (default: the first)")
    ls.add_argument("--json", action="store_true")
    ls.set_defaults(handler=_cmd_ls)

    status = sub.add_parser("status", parents=[common], help="ledger counts and last failures")
    status.add_argument("--json", action="store_true")
    status.set_defaults(handler=_cmd_status)

    retry = sub.add_parser("retry", parents=[common], help="re-queue failed recordings")
    retry.add_argument("--failed", action="store_true", help="also those failed for good")
    retry.set_defaults(handler=_cmd_retry)

    reconcile = sub.add_parser(
        "reconcile", parents=[common], help="rebuild the ledger from the bucket (daemon stopped)"
    )
    reconcile.add_argument("--json", action="store_true")
    reconcile.set_defaults(handler=_cmd_reconcile)

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

    check = sub.add_parser("check-config", parents=[common], help="validate the configuration")
    check.set_defaults(handler=_cmd_check_config)

    add_call_parsers(sub, common)

    doctor = sub.add_parser(
        "doctor", parents=[common], help="check the whole set-up: ✓ or ✗ with the fix, per check"
    )
    doctor.add_argument("--json", action="store_true", help="one JSON document, for tools")
    doctor.add_argument(
        "--create-bucket",
        action="store_true",
        help="create the configured bucket (in s3.region) if it does not exist",
    )
    doctor.set_defaults(handler=_cmd_doctor)

    from archiver.web.commands import add_web_parsers

    add_web_parsers(sub, common)
    add_parsers(sub, common)

    simulate = sub.add_parser("simulate", help="run the PBX simulator (tests, demo, benchmarks)")
    simulate.add_argument("--log-level", default="info", choices=["debug", "info", "warning"])
    simulate.set_defaults(handler=_cmd_simulate)
    if _command(argv) == "simulate":
        from archiver.lab.simulator.server import add_arguments

        add_arguments(simulate)
    return parser


def _command(argv: Sequence[str]) -> str | None:
    """The subcommand `argv` names: its first word that is not an option (the top-level options
    take no values)."""
    return next((word for word in argv if not word.startswith("-")), None)


def _day(text: str) -> date:
    """argparse type for a day: YYYY-MM-DD, with a message that says so."""
    try:
        return date.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"{text!r} is not a date: write YYYY-MM-DD, e.g. 2016-11-17"
        ) from None


def _load(args: argparse.Namespace) -> Config:
    return load_config(config_path(args.config))


def _cmd_check_config(args: argparse.Namespace) -> int:
    path = config_path(args.config)
    cfg = load_config(path)
    for pbx in cfg.pbx:
        register_secret(pbx_password(pbx))
    for warning in [*_security_warnings(path, cfg), *retention_warnings(cfg)]:
        print(f"warning: {warning}", file=sys.stderr)
    find_ffmpeg(cfg.transcode.ffmpeg)
    print(f"{path}: OK ({len(cfg.pbx)} PBX, bucket {cfg.s3.bucket!r})")
    return EXIT_OK


def _cmd_status(args: argparse.Namespace) -> int:
    cfg = _load(args)
    with contextlib.closing(open_state(cfg, create=False)) as state:
        where = state.where
        counts = state.ledger.counts()
        by_pbx = state.ledger.counts_by_pbx()
        listed_at = state.ledger.last_listings_ok()
        failures = state.ledger.recent_failures(10)
        backend = state.backend
    pbxs = [pbx.name for pbx in cfg.pbx] + sorted(set(by_pbx) - {p.name for p in cfg.pbx})
    if args.json:
        per_pbx = {
            name: {
                "counts": by_pbx.get(name, dict.fromkeys(counts, 0)),
                "last_listing_ok_at": _iso(listed_at.get(name)),
            }
            for name in pbxs
        }
        document = {
            "counts": counts,
            # Destroyed on purpose by the retention code (archiver retention run, erase).
            "destroyed": counts.get("destroyed", 0),
            "pbx": per_pbx,
            "failures": [asdict(f) for f in failures],
            "state": {"backend": backend, "where": where},
        }
        print(json.dumps(document, indent=2))
        return EXIT_OK
    print(f"state: {backend} {where}")
    print("  ".join(f"{name} {count}" for name, count in counts.items()))
    for name in pbxs:
        row = by_pbx.get(name, {})
        states = "  ".join(f"{state} {row.get(state, 0)}" for state in counts)
        last = _iso(listed_at.get(name)) or "never"
        print(f"pbx {name}: {states}  last listing OK {last}")
    for entry in failures:
        print(f"failed  {entry.key}  attempts={entry.attempts}  {entry.last_error}")
    return EXIT_OK


def _iso(epoch_s: float | None) -> str | None:
    """Local time with offset, to the second; None stays None."""
    if epoch_s is None:
        return None
    return datetime.fromtimestamp(epoch_s).astimezone().isoformat(timespec="seconds")


def _cmd_retry(args: argparse.Namespace) -> int:
    cfg = _load(args)
    with contextlib.closing(open_state(cfg, create=False)) as state:
        where = state.where
        retryable, for_good = state.ledger.counts_failed()
        requeued = state.ledger.requeue_failed(only_retryable=not args.failed)
    print(
        f"{where}: {retryable + for_good} failed recording(s): {retryable} retryable, "
        f"{for_good} failed for good; re-queued {requeued}"
        + ("" if args.failed or not for_good else " (add --failed to re-queue all)")
    )
    return EXIT_OK


def _cmd_reconcile(args: argparse.Namespace) -> int:
    cfg = _load(args)
    try:
        with contextlib.closing(open_state(cfg)) as state:
            store = S3Store(cfg.s3)
            store.check_access()
            report = reconcile(cfg, store, state.ledger)
    except StoreError as error:
        print(f"error: {error.reason}", file=sys.stderr)
        return EXIT_UNREACHABLE
    if args.json:
        print(json.dumps(asdict(report), indent=2))
        return EXIT_OK
    print(
        f"{report.objects} object(s): {report.verified} verified, {report.empty} empty, "
        f"{report.unchanged} already known, {len(report.unmapped)} not mapped"
    )
    for key, reason in report.unmapped:
        print(f"not mapped  {key!a}  {reason}")
    return EXIT_OK


def _cmd_state_copy(args: argparse.Namespace) -> int:
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

    cfg = _load(args)
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


def _cmd_doctor(args: argparse.Namespace) -> int:
    # Imported here: the doctor's checks (certificates, probes) cost every other command nothing.
    from archiver.doctor.command import doctor

    return doctor(config_path(args.config), as_json=args.json, create_bucket=args.create_bucket)


def _cmd_simulate(args: argparse.Namespace) -> int:
    from archiver.lab.simulator.server import run_from_args

    return run_from_args(args)


def _cmd_ls(args: argparse.Namespace) -> int:
    cfg = _load(args)
    return asyncio.run(_ls(cfg, args))


async def _ls(cfg: Config, args: argparse.Namespace) -> int:
    """List through the documented commands only: `find` (a day or a pattern), or
    `list_files` of the recording root (`--folders`) or of one folder (`--folder NAME`)."""
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


def _cmd_run(args: argparse.Namespace) -> int:
    path = config_path(args.config)
    cfg = load_config(path)
    for where in readable_secret_files(path, cfg):
        # (verify_tls = false gets its own warning when the PBX clients are made.)
        log.warning("password_file_readable_by_others", path=str(where), hint=_CHMOD_HINT)
    return asyncio.run(_run(cfg, once=args.once))


_CHMOD_HINT = "chmod 600 it, or give the PBX password as a systemd credential"


def _security_warnings(path: Path, cfg: Config) -> list[str]:
    warnings = [
        f"{where} holds a secret (PBX password or callbacks token) and is readable by other "
        f"users: {_CHMOD_HINT}"
        for where in readable_secret_files(path, cfg)
    ]
    warnings += [
        f"pbx {pbx.name!r}: verify_tls = false: the PBX's certificate is not checked "
        "(set ca_file or tls_fingerprint instead)"
        for pbx in cfg.pbx
        if pbx.tls_unverified
    ]
    warnings += [
        f"pbx {pbx.name!r}: url is http:// to another host: the password crosses the network "
        "in clear (use https://)"
        for pbx in cfg.pbx
        if pbx.cleartext_remote
    ]
    database = cfg.state.unverified_tls()
    if database is not None:
        warnings.append(database)
    return warnings


def _cmd_backfill(args: argparse.Namespace) -> int:
    cfg = _load(args)
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
    with contextlib.closing(open_state(cfg)) as state:
        async with open_archiver(cfg, state) as archiver:
            if not await store_ready(archiver):
                return EXIT_UNREACHABLE
            async with _progress(archiver):
                report = await archive_until_signalled(archiver, plan)
    return _finish(report)


async def _run(cfg: Config, *, once: bool) -> int:
    with contextlib.closing(open_state(cfg)) as state:
        return await _run_with(cfg, state, once=once)


async def _run_with(cfg: Config, state: State, *, once: bool) -> int:
    async with open_archiver(cfg, state) as archiver:
        if not await store_ready(archiver):
            return EXIT_UNREACHABLE
        if once:
            async with _progress(archiver):
                report = await archive_until_signalled(archiver)
            return _finish(report)
        health = Health.for_config(cfg)
        metrics = Metrics([pbx.name for pbx in cfg.pbx], on_event=health.beat)
        metrics.watch_request_limits(
            lambda: {name: client.limit.limit for name, client in archiver.clients.items()}
        )
        metrics.watch_daemon(
            DaemonFacts(
                poll_interval_s=cfg.poll.interval_s,
                work_dir=cfg.state.work_path,
                in_flight=max_in_flight(cfg),
                failed_counts=state.ledger.counts_failed,
            )
        )
        archiver.observer = metrics
        service = Service(Notifier.from_environment(), health, metrics)
        # A PBX refusing our credentials does not stop the daemon (the others still archive,
        # and a fixed password is picked up without a restart): it is asked again after a
        # doubling pause, each one logged. One-shot commands exit 5 instead.
        for name in await check_pbxs(archiver.clients):
            archiver.back_off(name)
        destroyed = DestroyedCounter()
        metrics.add_counters(destroyed.samples, "Recordings destroyed, by reason.")
        async with (
            _http_server(cfg, health, metrics, state),
            _periodic_destruction(cfg, state, archiver.store, destroyed),
        ):
            service.ready()
            await serve(archiver, service)
    return EXIT_OK


@contextlib.asynccontextmanager
async def _periodic_destruction(
    cfg: Config, state: State, store: S3Store, counter: DestroyedCounter
) -> AsyncIterator[None]:
    """Destruction every [destruction] every_days beside the poll loop (archiver.retention);
    stopped between two recordings when the daemon stops."""
    task = asyncio.create_task(destroy_periodically(cfg, state, store, counter))
    try:
        yield
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


@contextlib.asynccontextmanager
async def _http_server(
    cfg: Config, health: Health, metrics: Metrics, state: State
) -> AsyncIterator[None]:
    if cfg.http.listen is None:
        yield
        return
    app = build_http_app(health)
    token = callbacks_token(cfg.callbacks)
    if token is not None:
        register_secret(token)
    add_callback_routes(app, cfg.callbacks, state.calls, state.aio)
    add_metrics_routes(
        app, metrics, ready_window_s=ready_window_s(cfg), state_problem=state.aio.problem
    )
    if CALLBACK_STATS_KEY in app:
        metrics.add_counters(app[CALLBACK_STATS_KEY].samples, "Call results received.")
    runner, port = await start_http(app, cfg.http.listen)
    log.info("http_listening", listen=cfg.http.listen, port=port)
    try:
        yield
    finally:
        await runner.cleanup()


_PROGRESS_EVERY_S = 10.0


@contextlib.asynccontextmanager
async def _progress(archiver: Archiver) -> AsyncIterator[None]:
    """A progress bar on stderr at a terminal; elsewhere a `progress` log line every 10 s."""
    if sys.stderr.isatty():
        bar = ProgressBar(sys.stderr)
        archiver.observer = bar
        try:
            yield
        finally:
            bar.close()
        return
    counter = ProgressLog()
    archiver.observer = counter
    async with log_progress(counter, every_s=_PROGRESS_EVERY_S, quiet=lambda: archiver.stopping):
        yield


def _finish(report: PollReport) -> int:
    log.info("done", **report.summary())
    if report.interrupted:
        return EXIT_INTERRUPTED
    if report.auth_refused or (report.listing_errors and report.listed == 0):
        return EXIT_UNREACHABLE
    return EXIT_SOME_FAILED if report.failed or report.listing_errors else EXIT_OK
