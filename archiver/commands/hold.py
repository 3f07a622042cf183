"""`archiver hold add --case REF (--number N | --key KEY | --from DATE --to DATE [--pbx NAME])
[--note TEXT]`, `archiver hold list [--json]`, `archiver hold release --case REF`: legal holds.
Held recordings are never destroyed or erased; a hold also covers recordings archived after it
that match it. With `[s3] object_lock = true` the store's S3 legal hold is set too (and cleared
on release, where no other hold covers the recording).

Exit codes: 0 done; 2 a bad command line (a number with letters, a reversed date range, a hold
without a selector, an unknown --case or --pbx); 3 the hold is recorded but the store refused
some S3 legal holds (listed); 5 S3 unreachable (with object_lock).
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import asdict
from typing import Any

from archiver.commands._shared import day, existing_state, load, open_store
from archiver.config import Config
from archiver.exits import EXIT_OK, EXIT_SOME_FAILED, EXIT_UNREACHABLE, EXIT_USAGE

__all__ = ["add_parser"]


def add_parser(sub: Any, common: argparse.ArgumentParser) -> None:
    hold = sub.add_parser(
        "hold",
        help="legal holds: keep chosen recordings past their retention period",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    inner = hold.add_subparsers(dest="hold_command", metavar="ACTION", required=True)
    add = inner.add_parser("add", parents=[common], help="hold recordings for a case")
    add.add_argument("--case", required=True, help="the case's reference, e.g. DAVA-2026-114")
    add.add_argument("--number", help="every call with this number as caller or callee")
    add.add_argument("--key", help="one recording: its S3 key (or the ledger's pbx/trunk/name)")
    add.add_argument("--from", dest="first", type=day, metavar="YYYY-MM-DD",
                     help="every call from this day (the PBX's local day) ...")  # fmt: skip
    add.add_argument("--to", dest="last", type=day, metavar="YYYY-MM-DD", help="... to this one")
    add.add_argument("--pbx", metavar="NAME", help="with --from/--to: only this PBX's calls")
    add.add_argument("--note", help="free text kept with the hold")
    add.set_defaults(handler=_add)
    listing = inner.add_parser("list", parents=[common], help="the active holds")
    listing.add_argument("--json", action="store_true")
    listing.add_argument("--all", action="store_true", help="released holds too")
    listing.set_defaults(handler=_list)
    release = inner.add_parser("release", parents=[common], help="release a case's holds")
    release.add_argument("--case", required=True)
    release.set_defaults(handler=_release)


def _selector_problem(args: argparse.Namespace) -> str | None:
    dated = args.first is not None or args.last is not None
    given = sum([args.number is not None, args.key is not None, dated])
    if given != 1:
        return "give exactly one of --number, --key, or --from with --to"
    if dated and (args.first is None or args.last is None):
        return "--from and --to go together"
    if dated and args.last < args.first:
        return f"--to {args.last} is before --from {args.first}"
    if args.pbx is not None and not dated:
        return "--pbx goes with --from/--to"
    return None


def _store(cfg: Config) -> tuple[Any, bool]:
    """The store when object_lock asks for S3 legal holds (None otherwise), and whether it is
    reachable."""
    if not cfg.s3.object_lock:
        return None, True
    store = open_store(cfg)
    return store, store is not None


def _add(args: argparse.Namespace) -> int:
    from archiver.retention import BadInput, add_hold, number_key_of, reference, username

    problem = _selector_problem(args)
    try:
        case = reference(args.case, "--case")
        number = None if args.number is None else number_key_of(args.number)
        if args.key is not None and (not args.key.isprintable() or len(args.key) > 1024):
            raise BadInput("--key is not a key")
    except BadInput as error:
        problem = problem or error.reason
    if problem is not None:
        print(f"error: {problem}; nothing held", file=sys.stderr)
        return EXIT_USAGE
    cfg = load(args)
    if args.pbx is not None:
        cfg.pbx_named(args.pbx)  # UnknownPbx: exit 2 with the names
    store, reachable = _store(cfg)
    if not reachable:
        return EXIT_UNREACHABLE
    with existing_state(cfg) as state:
        result = add_hold(state, store, case, by=username(), number=number, key=args.key,
                          from_day=args.first, to_day=args.last, pbx=args.pbx,
                          note=args.note)  # fmt: skip
    (hold,) = result.holds
    in_store = f"; S3 legal hold set on {result.store_changed}" if store is not None else ""
    print(f"hold {hold.id} added: case {hold.case_ref}, {hold.selector()}; covers "
          f"{result.recordings} archived recording(s) now and those archived later that "
          f"match{in_store}")  # fmt: skip
    for failure in result.failures:
        print(f"FAILED  S3 legal hold: {failure}", file=sys.stderr)
    return EXIT_SOME_FAILED if result.failures else EXIT_OK


def _list(args: argparse.Namespace) -> int:
    cfg = load(args)
    with existing_state(cfg) as state:
        holds = state.holds.listed(include_released=args.all)
        covered = {hold.id: len(state.holds.entries(hold)) for hold in holds}
    if args.json:
        items = [
            {**asdict(h), "from_day": _iso(h.from_day), "to_day": _iso(h.to_day),
             "created_at": h.created_at.isoformat(), "released_at": _iso(h.released_at),
             "active": h.active, "recordings": covered[h.id]}
            for h in holds
        ]  # fmt: skip
        print(json.dumps({"holds": items}, indent=2))
        return EXIT_OK
    for h in holds:
        state_word = "active" if h.active else f"released {_iso(h.released_at)} by {h.released_by}"
        print(f"{h.case_ref}  #{h.id}  {h.selector()}  {covered[h.id]} recording(s)  "
              f"since {h.created_at.isoformat(timespec='seconds')} by {h.created_by}  "
              f"{state_word}" + (f"  note: {h.note}" if h.note else ""))  # fmt: skip
    print(f"{sum(h.active for h in holds)} active hold(s)")
    return EXIT_OK


def _iso(value: Any) -> str | None:
    return None if value is None else str(value.isoformat())


def _release(args: argparse.Namespace) -> int:
    from archiver.retention import BadInput, reference, release_hold, username

    try:
        case = reference(args.case, "--case")
    except BadInput as error:
        print(f"error: {error.reason}", file=sys.stderr)
        return EXIT_USAGE
    cfg = load(args)
    with existing_state(cfg) as state:
        if not any(hold.active for hold in state.holds.of_case(case)):
            print(f"error: no active hold for case {case!r} (`archiver hold list` shows them); "
                  "nothing released", file=sys.stderr)  # fmt: skip
            return EXIT_USAGE
        store, reachable = _store(cfg)
        if not reachable:
            return EXIT_UNREACHABLE
        result = release_hold(state, store, case, by=username())
    in_store = f"; S3 legal hold cleared on {result.store_changed}" if store is not None else ""
    print(f"released {len(result.holds)} hold(s) of case {case}: {result.recordings} "
          f"recording(s) covered{in_store}")  # fmt: skip
    for failure in result.failures:
        print(f"FAILED  S3 legal hold: {failure}", file=sys.stderr)
    return EXIT_SOME_FAILED if result.failures else EXIT_OK
