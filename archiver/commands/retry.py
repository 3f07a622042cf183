"""`archiver retry`: re-queue failed recordings."""

from __future__ import annotations

import argparse
from typing import Any

import structlog

from archiver.commands._shared import existing_state, load
from archiver.exits import EXIT_OK

__all__ = ["add_parser"]

log = structlog.get_logger("archiver")


def add_parser(sub: Any, common: argparse.ArgumentParser) -> None:
    retry = sub.add_parser("retry", parents=[common], help="re-queue failed recordings")
    retry.add_argument("--failed", action="store_true", help="also those failed for good")
    retry.set_defaults(handler=_cmd_retry)


def _cmd_retry(args: argparse.Namespace) -> int:
    cfg = load(args)
    with existing_state(cfg) as state:
        where = state.where
        retryable, for_good = state.ledger.counts_failed()
        requeued = state.ledger.requeue_failed(only_retryable=not args.failed)
    print(
        f"{where}: {retryable + for_good} failed recording(s): {retryable} retryable, "
        f"{for_good} failed for good; re-queued {requeued}"
        + ("" if args.failed or not for_good else " (add --failed to re-queue all)")
    )
    return EXIT_OK
