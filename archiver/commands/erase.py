"""`archiver erase --number N --ref REQUEST [--dry-run] [--json] [--yes]`: an erasure request
(KVKK art. 11, GDPR art. 17). Every archived recording with N as caller or callee (any spelling)
is destroyed as `archiver retention run` destroys, and logged with the request's reference,
except those a hold covers (listed with their case) and those a `min_days` rule or the store's
lock keeps (listed with the rule and the first day they may go: a legal obligation to keep them
overrides the request, GDPR art. 17(3)(b)). N is masked in the call log (calls placed to it and
their callbacks).

Exit codes: 0 everything erasable was erased; 3 some were kept (or failed); 4 stopped by a
signal; 5 S3 unreachable; 2 a bad command line or no terminal to confirm on without --yes.
"""

from __future__ import annotations

import argparse
import json
from datetime import UTC, datetime
from typing import Any

from archiver.commands._lifecycle import (
    add_request_arguments,
    confirm_or_refuse,
    exit_for,
    outcome_json,
    outcome_text,
    person_request,
    signals_stop,
)
from archiver.commands._shared import existing_state, load, open_store
from archiver.exits import EXIT_INTERRUPTED, EXIT_OK, EXIT_SOME_FAILED, EXIT_UNREACHABLE, EXIT_USAGE
from archiver.numbers import InvalidNumber, normalise_number

__all__ = ["add_parser"]

COMMAND = "archiver erase"
# What the call log keeps instead of an erased number.
MASK = "erased"


def add_parser(sub: Any, common: argparse.ArgumentParser) -> None:
    erase = sub.add_parser(
        "erase",
        parents=[common],
        help="erase a person's recordings (an erasure request)",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_request_arguments(erase)
    erase.add_argument("--dry-run", action="store_true", help="show what would be erased")
    erase.add_argument("--json", action="store_true", help="one JSON document")
    erase.add_argument("--yes", action="store_true", help="do not ask")
    erase.set_defaults(handler=_erase)


def _erase(args: argparse.Namespace) -> int:
    from archiver.retention import Rules, execute, plan_erasure

    request = person_request(args, refused="; nothing erased")
    if request is None:
        return EXIT_USAGE
    number, ref = request.number, request.ref
    cfg = load(args)
    with existing_state(cfg) as state:
        plan = plan_erasure(state, Rules(cfg.retention, cfg.s3), number, ref, datetime.now(UTC))
        if args.dry_run:
            if args.json:
                print(json.dumps({**outcome_json(plan, None, "dry_run"), "request": ref},
                                 indent=2))  # fmt: skip
            else:
                _plan_text(plan, ref)
            return EXIT_OK
        if not args.json:
            _plan_text(plan, ref)
        refused = confirm_or_refuse(
            f"Erase {len(plan.due)} recording(s) and mask the number in the call log?",
            yes=args.yes,
        )
        if refused is not None:
            return refused
        store = open_store(cfg)
        if store is None:
            return EXIT_UNREACHABLE
        with signals_stop() as stop:
            result = execute(state, store, plan, command=f"{COMMAND} {ref}", stop=stop.is_set)
        try:
            call_number = normalise_number(number)
        except InvalidNumber:
            call_number = number  # an extension: the call log only holds dialled numbers
        masked = 0 if result.outcome.interrupted else state.calls.mask_number(call_number, MASK)
    outcome = result.outcome
    word = result.outcome_word
    if word == "ok" and outcome.kept:
        word = "some_kept"  # exit 3: the request is not wholly granted
    if args.json:
        document = outcome_json(plan, outcome, word)
        print(json.dumps({**document, "request": ref, "call_log_rows_masked": masked}, indent=2))
    else:
        outcome_text(outcome, word)
        print(f"call log: the number masked in {masked} row(s)")
    if outcome.interrupted:
        return EXIT_INTERRUPTED
    return EXIT_SOME_FAILED if outcome.kept or outcome.failed else exit_for(outcome)


def _plan_text(plan: Any, ref: str) -> None:
    print(f"erasure request {ref}: {plan.checked} archived recording(s) of this number, "
          f"{len(plan.due)} to erase, {len(plan.kept)} kept")  # fmt: skip
    for target in plan.due:
        entry = target.entry
        print(f"  erase  {entry.started_at.isoformat()}  {entry.caller or '-'} -> "
              f"{entry.callee or '-'}  {entry.object_key}")  # fmt: skip
    for kept in plan.kept:
        entry = kept.entry
        print(f"  keep   {entry.started_at.isoformat()}  {entry.caller or '-'} -> "
              f"{entry.callee or '-'}  {entry.object_key}  {kept.why}")  # fmt: skip
