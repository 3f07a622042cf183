"""`archiver export --number N --ref REQUEST --out FILE.zip`: an access request (KVKK art. 11,
GDPR art. 15). The person's recordings byte for byte as archived, `manifest.csv` (key, start
with offset, caller, callee, duration, SHA-256 of each MP3 as written to the zip, the PBX
original's SHA-256) and `request.txt` with the reference; recorded in the access log (action
`export`). A number with no recordings gets a zip saying so (an empty manifest).

Exit codes: 0 written; 2 a bad command line (letters in the number, FILE exists); 5 S3
unreachable or an object unreadable (nothing is left at FILE); 6 FILE cannot be written.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from archiver.commands._lifecycle import (
    add_request_arguments,
    person_request,
)
from archiver.commands._shared import existing_state, load, open_store
from archiver.exits import EXIT_LOCAL, EXIT_OK, EXIT_UNREACHABLE, EXIT_USAGE

__all__ = ["add_parser"]


def add_parser(sub: Any, common: argparse.ArgumentParser) -> None:
    export = sub.add_parser(
        "export",
        parents=[common],
        help="a person's recordings and a manifest in one zip (an access request)",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_request_arguments(export)
    export.add_argument("--out", required=True, type=Path, metavar="FILE.zip")
    export.set_defaults(handler=_export)


def _export(args: argparse.Namespace) -> int:
    from archiver.retention import export_number, username
    from archiver.s3 import StoreError

    request = person_request(args, refused="; no zip written")
    if request is None:
        return EXIT_USAGE
    ref = request.ref
    out: Path = args.out
    if out.exists():
        print(f"error: {out} exists: give a new file name", file=sys.stderr)
        return EXIT_USAGE
    cfg = load(args)
    store = open_store(cfg)
    if store is None:
        return EXIT_UNREACHABLE
    with existing_state(cfg) as state:
        try:
            result = export_number(state, store, request.number, ref, out, username=username(),
                                   shown_number=args.number)  # fmt: skip
        except StoreError as error:
            print(f"error: {error.reason}; no zip written", file=sys.stderr)
            return EXIT_UNREACHABLE
        except OSError as error:
            print(f"error: cannot write {out}: {error.strerror}", file=sys.stderr)
            return EXIT_LOCAL
    print(f"{result.path}: {result.recordings} recording(s), {result.mp3_bytes} bytes of MP3, "
          f"manifest.csv and request.txt (request {ref}); recorded in the access log")  # fmt: skip
    return EXIT_OK
