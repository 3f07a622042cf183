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
from typing import Any

__all__ = ["add_parsers"]


def add_parsers(sub: Any, common: argparse.ArgumentParser) -> None:
    """Add every command module's subcommand to `sub` (an argparse subparsers action), in the
    order of their module names."""
    for info in sorted(pkgutil.iter_modules(__path__), key=lambda found: found.name):
        module = importlib.import_module(f"{__name__}.{info.name}")
        module.add_parser(sub, common)
