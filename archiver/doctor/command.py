"""`archiver doctor`: run the checks, print them, and turn them into an exit code.

Exit codes: 0 no check failed; 1 the configuration does not load; 2 some check failed (the same
meaning as the other commands' 2: something is unreachable, refused or broken).
"""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

from archiver.doctor import all_passed, render_json, render_text, run_doctor

__all__ = ["doctor"]

_EXIT_OK, _EXIT_CONFIG, _EXIT_FAILED = 0, 1, 2


def doctor(path: Path, *, as_json: bool, create_bucket: bool) -> int:
    """Check the set-up configured at `path`; print the result; return the exit code."""
    checks = asyncio.run(run_doctor(path, create_bucket=create_bucket))
    print(render_json(checks) if as_json else render_text(checks))
    sys.stdout.flush()
    if all_passed(checks):
        return _EXIT_OK
    if checks[0].name == "configuration" and not checks[0].ok:
        return _EXIT_CONFIG
    return _EXIT_FAILED
