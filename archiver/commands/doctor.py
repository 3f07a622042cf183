"""`archiver doctor`: check the whole set-up, one line per check."""

from __future__ import annotations

import argparse
from typing import Any

import structlog

from archiver.config import config_path

__all__ = ["add_parser"]

log = structlog.get_logger("archiver")


def add_parser(sub: Any, common: argparse.ArgumentParser) -> None:
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
    # Imported here: the doctor's checks (certificates, probes) cost every other command nothing.
    from archiver.doctor import doctor

    return doctor(config_path(args.config), as_json=args.json, create_bucket=args.create_bucket)
