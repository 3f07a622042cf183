"""`archiver reconcile`: rebuild a lost ledger from the bucket."""

from __future__ import annotations

import argparse
import contextlib
import json
import sys
from dataclasses import asdict
from typing import Any

import structlog

from archiver.commands._shared import load
from archiver.exits import (
    EXIT_OK,
    EXIT_UNREACHABLE,
)

__all__ = ["add_parser"]

log = structlog.get_logger("archiver")


def add_parser(sub: Any, common: argparse.ArgumentParser) -> None:
    reconcile = sub.add_parser(
        "reconcile", parents=[common], help="rebuild the ledger from the bucket (daemon stopped)"
    )
    reconcile.add_argument("--json", action="store_true")
    reconcile.set_defaults(handler=_cmd_reconcile)


def _cmd_reconcile(args: argparse.Namespace) -> int:
    from archiver.pipeline import reconcile
    from archiver.s3 import S3Store, StoreError
    from archiver.state import open_state

    cfg = load(args)
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
