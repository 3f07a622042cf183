"""`archiver calls`: the calls placed through archiver and the status their callbacks reported."""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from archiver.commands._shared import call_row, existing_state, load, when
from archiver.exits import EXIT_CONFIG, EXIT_OK
from archiver.numbers import InvalidNumber, normalise_number

__all__ = ["add_parser"]


def add_parser(sub: Any, common: argparse.ArgumentParser) -> None:
    calls = sub.add_parser("calls", parents=[common], help="calls placed and their final status")
    calls.add_argument("--number", help="only calls to this number")
    calls.add_argument("--since", type=when, metavar="D", help="dialled at or after (ISO 8601)")
    calls.add_argument("--json", action="store_true")
    calls.set_defaults(handler=_cmd_calls)


def _cmd_calls(args: argparse.Namespace) -> int:
    cfg = load(args)
    number = None
    if args.number is not None:
        try:
            number = normalise_number(args.number)
        except InvalidNumber as error:
            print(f"error: {error.reason}", file=sys.stderr)
            return EXIT_CONFIG
    since = None if args.since is None else args.since.astimezone().timestamp()
    with existing_state(cfg) as state:
        found = state.calls.calls(number=number, since=since)
    if args.json:
        print(json.dumps({"calls": [call_row(call) for call in found]}, indent=2))
        return EXIT_OK
    for call in found:
        row = call_row(call)
        print(f"{call.id:>6}  {row['dial_at']}  {call.number}  {call.pbx}  {call.state:<8}"
              f"  {call.status or '-':<12} {'ended' if call.ended else 'open':<5}"
              f"  {call.events} event(s)")  # fmt: skip
    print(f"{len(found)} call(s)")
    return EXIT_OK
