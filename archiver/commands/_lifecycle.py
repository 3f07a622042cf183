"""What the archive-lifecycle commands (`retention`, `erase`, `export`, `hold`) share: a
person's request (--number, --ref), the confirmation before a destruction, the signals that
stop one between two recordings, a plan's and an outcome's text and JSON. (A leading
underscore: not a command module.) The retention part itself is imported inside these
functions: parsing loads none of it."""

from __future__ import annotations

import argparse
import contextlib
import signal
import sys
import threading
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from typing import Any

from archiver.exits import EXIT_INTERRUPTED, EXIT_OK, EXIT_SOME_FAILED, EXIT_USAGE

__all__ = [
    "PersonRequest",
    "add_request_arguments",
    "confirm_or_refuse",
    "entry_json",
    "entry_line",
    "exit_for",
    "outcome_json",
    "outcome_text",
    "person_request",
    "signals_stop",
]


@dataclass(frozen=True)
class PersonRequest:
    """A data subject's request (erasure, access): the number as the catalogue keys it and the
    request's reference, both checked."""

    number: str
    ref: str


def add_request_arguments(parser: argparse.ArgumentParser) -> None:
    """--number and --ref, the two arguments every request names."""
    parser.add_argument("--number", required=True, help="the person's number, any spelling")
    parser.add_argument("--ref", required=True, help="the request's reference, e.g. KVKK-2026-31")


def person_request(args: argparse.Namespace, *, refused: str = "") -> PersonRequest | None:
    """--number and --ref checked; None after printing why (with `refused`, e.g. "; nothing
    erased", after the reason): the command exits 2."""
    from archiver.retention import BadInput, number_key_of, reference

    try:
        return PersonRequest(number_key_of(args.number), reference(args.ref, "--ref"))
    except BadInput as error:
        print(f"error: {error.reason}{refused}", file=sys.stderr)
        return None


@contextlib.contextmanager
def signals_stop() -> Iterator[threading.Event]:
    """An event set by SIGTERM or SIGINT while the block runs (a destruction pass stops between
    two recordings, never half-way through one)."""
    stop = threading.Event()
    previous = {
        sig: signal.signal(sig, lambda _signum, _frame: stop.set())
        for sig in (signal.SIGTERM, signal.SIGINT)
    }
    try:
        yield stop
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def confirm_or_refuse(question: str, *, yes: bool) -> int | None:
    """None to go on; else the exit code: no terminal to ask on (2) or not confirmed (0)."""
    from archiver.retention import confirm

    if yes:
        return None
    if not sys.stdin.isatty():
        print("error: not a terminal: give --yes to destroy without asking", file=sys.stderr)
        return EXIT_USAGE
    if not confirm(question):
        print("nothing destroyed", file=sys.stderr)
        return EXIT_OK
    return None


def entry_json(entry: Any) -> dict[str, Any]:
    """A catalogue entry as JSON (times as ISO 8601)."""
    return {
        "key": entry.object_key,
        "recording_key": entry.recording_key,
        "pbx": entry.pbx,
        "trunk": entry.trunk,
        "caller": entry.caller,
        "callee": entry.callee,
        "started_at": entry.started_at.isoformat(),
        "duration_s": entry.duration_s,
    }


def entry_line(entry: Any) -> str:
    """A catalogue entry on one line: start, caller -> callee, key."""
    return (
        f"{entry.started_at.isoformat()}  {entry.caller or '-':>14} -> {entry.callee or '-':<14}"
        f"  {entry.object_key}"
    )


def outcome_json(plan: Any, outcome: Any | None, word: str) -> dict[str, Any]:
    """The plan (and what was done) as one JSON document."""
    document: dict[str, Any] = {
        "dry_run": outcome is None,
        "checked": plan.checked,
        "due": [{**entry_json(t.entry), "basis": t.basis} for t in plan.due],
        "kept": [
            {
                **entry_json(k.entry),
                "why": k.why,
                "cases": list(k.cases),
                "may_go_at": None if k.may_go_at is None else k.may_go_at.isoformat(),
            }
            for k in (plan.kept if outcome is None else outcome.kept)
        ],
        "waiting_for_store_lock": plan.waiting,
        "outcome": word,
    }
    if outcome is not None:
        document["destroyed"] = [{**asdict(d), "at": d.at.isoformat()} for d in outcome.destroyed]
        document["failed"] = [{**entry_json(f.entry), "reason": f.reason} for f in outcome.failed]
        document["counts"] = {
            "destroyed": len(outcome.destroyed),
            "kept": len(outcome.kept),
            "failed": len(outcome.failed),
        }
    return document


def outcome_text(outcome: Any, word: str) -> None:
    for done in outcome.destroyed:
        print(f"destroyed  {done.started_at}  {done.object_key}  {done.basis}  "
              f"({done.versions} version(s))")  # fmt: skip
    for kept in outcome.kept:
        print(f"kept       {entry_line(kept.entry)}  {kept.why}")
    for failed in outcome.failed:
        print(f"FAILED     {entry_line(failed.entry)}  {failed.reason}")
    print(f"destroyed {len(outcome.destroyed)}, kept {len(outcome.kept)}, failed "
          f"{len(outcome.failed)}: {word}")  # fmt: skip


def exit_for(outcome: Any) -> int:
    if outcome.interrupted:
        return EXIT_INTERRUPTED
    return EXIT_SOME_FAILED if outcome.failed else EXIT_OK
