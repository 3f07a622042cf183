"""The exit codes of every `archiver` command, in one place that imports nothing of ours (so a
subcommand's handler can use them without importing `cli`): one per kind of condition an
administrator (or systemd's `RestartPreventExitStatus=`) acts on differently. 2 is argparse's
own code for a bad command line, so "unreachable" has a code of its own."""

from __future__ import annotations

from typing import Final

__all__ = [
    "EXIT_CODES",
    "EXIT_CONFIG",
    "EXIT_INTERRUPTED",
    "EXIT_LOCAL",
    "EXIT_OK",
    "EXIT_SOME_FAILED",
    "EXIT_UNREACHABLE",
    "EXIT_USAGE",
]

EXIT_OK: Final = 0
EXIT_CONFIG: Final = 1
EXIT_USAGE: Final = 2
EXIT_SOME_FAILED: Final = 3
EXIT_INTERRUPTED: Final = 4
EXIT_UNREACHABLE: Final = 5
EXIT_LOCAL: Final = 6

# For `archiver --help` and the README: code, then what it means and what to do.
EXIT_CODES: Final = (
    (EXIT_OK, "success"),
    (EXIT_CONFIG, "bad configuration (`archiver check-config` lists every problem)"),
    (EXIT_USAGE, "bad command line (unknown option, a date not written YYYY-MM-DD...)"),
    (EXIT_SOME_FAILED, "finished, but some recordings failed (`archiver status` says why)"),
    (EXIT_INTERRUPTED, "stopped by a signal before the work was done: run it again"),
    (EXIT_UNREACHABLE, "a PBX, S3 or the state database could not be reached, or refused"),
    (
        EXIT_LOCAL,
        "a problem on this machine: state file missing or unopenable, HTTP port taken, no ffmpeg",
    ),
)
