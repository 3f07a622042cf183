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
import contextlib
import sys
from pathlib import Path
from typing import Any

from archiver.config import config_path, load_config
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
    export.add_argument("--number", required=True, help="the person's number, any spelling")
    export.add_argument("--ref", required=True, help="the request's reference")
    export.add_argument("--out", required=True, type=Path, metavar="FILE.zip")
    export.set_defaults(handler=_export)


def _export(args: argparse.Namespace) -> int:
    from archiver.commands._lifecycle import open_store
    from archiver.retention import BadInput, export_number, number_key_of, reference, username
    from archiver.s3 import StoreError
    from archiver.state import open_state

    try:
        number = number_key_of(args.number)
        ref = reference(args.ref, "--ref")
    except BadInput as error:
        print(f"error: {error.reason}", file=sys.stderr)
        return EXIT_USAGE
    out: Path = args.out
    if out.exists():
        print(f"error: {out} exists: give a new file name", file=sys.stderr)
        return EXIT_USAGE
    cfg = load_config(config_path(args.config))
    store = open_store(cfg)
    if store is None:
        return EXIT_UNREACHABLE
    with contextlib.closing(open_state(cfg, create=False)) as state:
        try:
            result = export_number(state, store, number, ref, out, username=username(),
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
