"""`archiver doctor [--json] [--create-bucket]`: its parser and handler.

Exit codes: 0 every check passed; 1 the configuration does not load; 2 some check failed (the
same meaning as the other commands' 2: something is unreachable, refused or broken).
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from typing import Any

from archiver.config import config_path
from archiver.doctor import all_passed, render_json, render_text, run_doctor

__all__ = ["add_doctor_parser"]

_EXIT_OK, _EXIT_CONFIG, _EXIT_FAILED = 0, 1, 2


def add_doctor_parser(sub: Any, common: argparse.ArgumentParser) -> None:
    """Add `doctor` to the `archiver` subcommands."""
    doctor = sub.add_parser(
        "doctor", parents=[common], help="check the whole set-up: ✓ or ✗ with the fix, per check"
    )
    doctor.add_argument("--json", action="store_true", help="one JSON document, for tools")
    doctor.add_argument(
        "--create-bucket",
        action="store_true",
        help="create the configured bucket (in s3.region) if it does not exist",
    )
    doctor.set_defaults(handler=_cmd_doctor)


def _cmd_doctor(args: argparse.Namespace) -> int:
    path = config_path(args.config)
    checks = asyncio.run(run_doctor(path, create_bucket=args.create_bucket))
    print(render_json(checks) if args.json else render_text(checks))
    sys.stdout.flush()
    if all_passed(checks):
        return _EXIT_OK
    if checks[0].name == "configuration" and not checks[0].ok:
        return _EXIT_CONFIG
    return _EXIT_FAILED
