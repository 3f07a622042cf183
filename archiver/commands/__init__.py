"""The `archiver` command's subcommands, one module per command (borgmatic's actions).

Each module here has `add_parser(sub, common)`: it adds its subcommand to `sub` (with `common`,
the `--config`/`--log-level` options, as a parent) and sets `handler` (a function of the parsed
arguments returning an exit code from `archiver.exits`). Modules are found by name, so a new
command is a new file. A module imports the heavy parts it runs inside its handler, so that
parsing one command never loads another's machinery. `archiver.cli` only parses and dispatches.
"""

from __future__ import annotations

import argparse
import importlib
import pkgutil
from collections.abc import Collection, Sequence
from typing import Any

from archiver.commands._shared import DATES

__all__ = ["DATES", "add_parsers", "command_modules"]


def command_modules() -> list[str]:
    """The command modules' names, in name order (a leading underscore: shared code, not a
    command)."""
    found = (info.name for info in pkgutil.iter_modules(__path__))
    return sorted(name for name in found if not name.startswith("_"))


def add_parsers(
    sub: Any,
    common: argparse.ArgumentParser,
    names: Sequence[str] | None = None,
    *,
    exclude: Collection[str] = (),
) -> None:
    """Add the subcommands of the modules `names`, in that order (None: every command module
    not in `exclude`, in name order) to `sub` (an argparse subparsers action). `archiver
    --help` lists the commands in the order they are added."""
    chosen = [n for n in command_modules() if n not in exclude] if names is None else names
    for name in chosen:
        module = importlib.import_module(f"{__name__}.{name}")
        module.add_parser(sub, common)
