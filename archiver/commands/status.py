"""`archiver status`: the ledger's counts, per PBX, and the last failures."""

from __future__ import annotations

import argparse
import json
from dataclasses import asdict
from datetime import datetime
from typing import Any

import structlog

from archiver.commands._shared import existing_state, load
from archiver.exits import EXIT_OK

__all__ = ["add_parser"]

log = structlog.get_logger("archiver")


def add_parser(sub: Any, common: argparse.ArgumentParser) -> None:
    status = sub.add_parser("status", parents=[common], help="ledger counts and last failures")
    status.add_argument("--json", action="store_true")
    status.set_defaults(handler=_cmd_status)


def _cmd_status(args: argparse.Namespace) -> int:
    cfg = load(args)
    with existing_state(cfg) as state:
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
