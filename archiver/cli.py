"""The `archiver` command: the parser and the dispatch, nothing else. Each command is one module
in `archiver.commands` (its parser and its run, the parts it runs imported by the run);
`simulate` stays here (it loads the lab's options only when the command line names it). Parsing
loads no part's machinery (tests/test_cli_imports.py).

Exit codes are in `archiver.exits`; the text administrators read first is `_DESCRIPTION`.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

import structlog

from archiver import __version__, cpu_budget
from archiver.commands import DATES, add_parsers
from archiver.config import (
    ConfigError,
    UnknownPbx,
)
from archiver.exits import (
    EXIT_CODES,
    EXIT_CONFIG,
    EXIT_LOCAL,
    EXIT_UNREACHABLE,
    EXIT_USAGE,
)
from archiver.logs import configure_logging

__all__ = ["main"]

log = structlog.get_logger("archiver")

_DESCRIPTION = """\
Archive the call recordings of a ZYCOO CooVox / Asterisk PBX to S3 as verified MP3, exactly once.

`archiver run` is the daemon (systemd runs it); the other commands are for an administrator:
backfill past days, look at what a PBX lists, check the ledger, re-queue failures. Each takes
--config FILE (default: $ARCHIVER_CONFIG, then /etc/archiver/archiver.toml); `archiver
COMMAND --help` shows its options."""

# The command modules added first, in this order (archiver/commands/<name>.py).
_FIRST = ("run", "backfill", "ls", "status", "retry", "reconcile", "state", "check_config")
_THEN = ("call", "calls", "doctor", "web")  # then the rest in name order


def _epilog() -> str:
    codes = "\n".join(f"  {code}  {meaning}" for code, meaning in EXIT_CODES)
    return f"{DATES}\n\nexit codes:\n{codes}"


def main(argv: Sequence[str] | None = None) -> int:
    # Folders 0700 and files 0600 whatever the shell's umask: the ledger, its WAL, recordings
    # and MP3s in the work folder are for the service alone (admins run `backfill` from a shell).
    os.umask(0o077)
    argv = sys.argv[1:] if argv is None else list(argv)
    parser = _parser(argv)
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help(sys.stderr)
        return EXIT_USAGE
    # The daemon's logs go to stdout (journald); commands whose stdout is their answer log to
    # stderr so the answer stays parseable.
    configure_logging(
        level=args.log_level, stream=sys.stdout if args.logs_to_stdout else sys.stderr
    )
    handler: Callable[[argparse.Namespace], int] = args.handler
    cpu_budget.install_from_env()  # scripts/bench's CPU budget per stage; off unless asked for
    try:
        return handler(args)
    except ConfigError as error:
        for problem in error.problems:
            print(problem, file=sys.stderr)
        return EXIT_CONFIG
    except Exception as error:
        code = _named_exit(error)
        if code is None:
            raise
        # A condition we can name: one line that says what and how to fix it, no traceback.
        hint = " (see --pbx)" if isinstance(error, UnknownPbx) else ""
        print(f"error: {error}{hint}", file=sys.stderr)
        return code


def _named_exit(error: Exception) -> int | None:
    """What a named failure exits with (None: not one we can name); the first match wins
    (StateFileError is a StateUnavailable: a missing file is this machine's problem, an
    unreachable database is not). The parts are imported here, once a handler has failed:
    parsing a command line loads none of them."""
    from archiver.pipeline import FfmpegNotFound, WorkDirRefused
    from archiver.service import ListenError
    from archiver.state import SchemaTooNew, StateFileError, StateUnavailable

    exit_for: tuple[tuple[type[Exception], int], ...] = (
        (WorkDirRefused, EXIT_CONFIG),
        (SchemaTooNew, EXIT_CONFIG),
        (UnknownPbx, EXIT_USAGE),
        (ListenError, EXIT_LOCAL),
        (FfmpegNotFound, EXIT_LOCAL),
        (StateFileError, EXIT_LOCAL),
        (StateUnavailable, EXIT_UNREACHABLE),
    )
    return next((code for kind, code in exit_for if isinstance(error, kind)), None)


def _parser(argv: Sequence[str]) -> argparse.ArgumentParser:
    """The parser for `argv`. The lab (the simulator's options) is imported only when `argv`
    names `simulate`: no product command loads test code."""
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--config", type=Path, help="TOML file (default: $ARCHIVER_CONFIG, then "
                        "/etc/archiver/archiver.toml)")  # fmt: skip
    levels = ["debug", "info", "warning", "error"]
    common.add_argument("--log-level", default="info", choices=levels)

    parser = argparse.ArgumentParser(
        prog="archiver",
        description=_DESCRIPTION,
        epilog=_epilog(),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"archiver {__version__}")
    parser.set_defaults(logs_to_stdout=False)
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    # The order of `archiver --help`: the daemon and its everyday commands first.
    add_parsers(sub, common, _FIRST)
    add_parsers(sub, common, _THEN)
    add_parsers(sub, common, exclude={*_FIRST, *_THEN})

    simulate = sub.add_parser("simulate", help="run the PBX simulator (tests, demo, benchmarks)")
    simulate.add_argument("--log-level", default="info", choices=["debug", "info", "warning"])
    simulate.set_defaults(handler=_cmd_simulate)
    if _command(argv) == "simulate":
        from archiver.lab.simulator.server import add_arguments

        add_arguments(simulate)
    return parser


def _command(argv: Sequence[str]) -> str | None:
    """The subcommand `argv` names: its first word that is not an option (the top-level options
    take no values)."""
    return next((word for word in argv if not word.startswith("-")), None)


def _cmd_simulate(args: argparse.Namespace) -> int:
    from archiver.lab.simulator.server import run_from_args

    return run_from_args(args)
