"""`archiver doctor`: run the checks, print them, and turn them into an exit code.

Exit codes (`archiver.exits`): 0 no check failed; 1 the configuration does not load; 5 some check
failed (the same meaning as the other commands' 5: something is unreachable, refused or broken).
"""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

from archiver.doctor.result import all_passed, render_json, render_text
from archiver.doctor.run import run_doctor
from archiver.exits import EXIT_CONFIG, EXIT_OK, EXIT_UNREACHABLE

__all__ = ["doctor"]


def doctor(path: Path, *, as_json: bool, create_bucket: bool) -> int:
    """Check the set-up configured at `path`; print the result; return the exit code."""
    checks = asyncio.run(run_doctor(path, create_bucket=create_bucket))
    print(render_json(checks) if as_json else render_text(checks))
    sys.stdout.flush()
    if all_passed(checks):
        return EXIT_OK
    if checks[0].name == "configuration" and not checks[0].ok:
        return EXIT_CONFIG
    return EXIT_UNREACHABLE
