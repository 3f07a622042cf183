"""What several commands share: the date argument, loading the configuration, opening the
existing state, the store checked reachable, a backfill's or one poll's progress and its exit
code. (A leading underscore: not a command module.)"""

from __future__ import annotations

import argparse
import contextlib
import sys
from collections.abc import AsyncIterator, Iterator
from dataclasses import asdict
from datetime import date, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import structlog

from archiver.config import Config, config_path, load_config
from archiver.exits import EXIT_INTERRUPTED, EXIT_OK, EXIT_SOME_FAILED, EXIT_UNREACHABLE

if TYPE_CHECKING:  # the parts are imported by the handlers that run them: parsing loads none
    from archiver.pipeline import Archiver, PollReport
    from archiver.state import CallSummary, State

__all__ = [
    "CHMOD_HINT",
    "DATES",
    "call_row",
    "day",
    "existing_state",
    "finish",
    "load",
    "open_store",
    "progress",
    "security_warnings",
    "when",
]

log = structlog.get_logger("archiver")

DATES = "Dates are YYYY-MM-DD (e.g. 2016-11-17), the PBX's local calendar day."
_PROGRESS_EVERY_S = 10.0
CHMOD_HINT = "chmod 600 it, or give the PBX password as a systemd credential"


def day(text: str) -> date:
    """argparse type for a day: YYYY-MM-DD, with a message that says so."""
    try:
        return date.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"{text!r} is not a date: write YYYY-MM-DD, e.g. 2016-11-17"
        ) from None


def load(args: argparse.Namespace) -> Config:
    return load_config(config_path(args.config))


@contextlib.contextmanager
def existing_state(cfg: Config) -> Iterator[State]:
    """The configured state, closed after the block; never created (a command that only reads
    or destroys has nothing to do on a state that does not exist)."""
    from archiver.state import open_state

    with contextlib.closing(open_state(cfg, create=False)) as state:
        yield state


@contextlib.asynccontextmanager
async def progress(archiver: Archiver) -> AsyncIterator[None]:
    """A progress bar on stderr at a terminal; elsewhere a `progress` log line every 10 s."""
    from archiver.service import ProgressBar, ProgressLog, log_progress

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


def finish(report: PollReport) -> int:
    log.info("done", **report.summary())
    if report.interrupted:
        return EXIT_INTERRUPTED
    if report.auth_refused or (report.listing_errors and report.listed == 0):
        return EXIT_UNREACHABLE
    return EXIT_SOME_FAILED if report.failed or report.listing_errors else EXIT_OK


def security_warnings(path: Path, cfg: Config) -> list[str]:
    from archiver.credentials import readable_secret_files

    warnings = [
        f"{where} holds a secret (PBX password or callbacks token) and is readable by other "
        f"users: {CHMOD_HINT}"
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


def when(text: str) -> datetime:
    try:
        return datetime.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected ISO 8601, e.g. 2026-11-26T14:30, got {text!r}"
        ) from None


def call_row(call: CallSummary) -> dict[str, Any]:
    row = asdict(call)
    for name in ("placed_at", "dial_at"):
        row[name] = datetime.fromtimestamp(row[name]).astimezone().isoformat(timespec="seconds")
    return row


def open_store(cfg: Config) -> Any:
    """The configured store, checked reachable; None (after printing why) if it is not."""
    from archiver.s3 import S3Store, StoreError

    store = S3Store(cfg.s3)
    try:
        store.check_access()
    except StoreError as error:
        print(f"error: {error.reason}", file=sys.stderr)
        return None
    return store
