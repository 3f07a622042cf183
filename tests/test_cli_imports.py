"""Parsing a command line loads no machinery: `archiver --help` and `archiver COMMAND --help` (every
command and action, found by walking the parser) import the command modules and the light leaves
(config, exits, the commands' shared helpers) only; each handler imports the parts it runs
(archiver/commands/__init__.py). The daemon's machinery (pipeline, PBX client, S3, state drivers)
cost ~0.45 s of CPU per `archiver backfill --help` when the command modules imported it."""

from __future__ import annotations

import json
import subprocess
import sys

# Parts and libraries a parser must not load (`simulate` loads the lab on purpose, when named).
HEAVY = (
    "archiver.pipeline",
    "archiver.state",
    "archiver.s3",
    "archiver.web",
    "archiver.pbx",
    "archiver.calls",
    "archiver.retention",
    "archiver.doctor",
    "archiver.audit",
    "archiver.service",
    "archiver.lab",
    "aiohttp",
    "boto3",
    "botocore",
    "ldap3",
    "psycopg",
)

# The child: every command line `COMMAND [ACTION] --help`, through archiver.cli.main as the
# `archiver` script runs it; then the modules loaded.
_PROBE = """
import argparse, contextlib, io, json, sys
from archiver.cli import _parser, main

def lines(parser, words):
    yield words
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, child in action.choices.items():
                if words or name != "simulate":
                    yield from lines(child, [*words, name])

helped = []
for words in list(lines(_parser(["--help"]), [])):
    out = io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.suppress(SystemExit):
        main([*words, "--help"])
    assert out.getvalue().startswith("usage: archiver"), (words, out.getvalue()[:200])
    helped.append(" ".join(words))
print(json.dumps({"helped": helped, "modules": sorted(sys.modules)}))
"""


def _heavy(module: str) -> bool:
    return any(module == name or module.startswith(f"{name}.") for name in HEAVY)


def test_help_of_every_command_loads_no_machinery() -> None:
    result = subprocess.run(
        [sys.executable, "-c", _PROBE], capture_output=True, text=True, timeout=120, check=False
    )
    assert result.returncode == 0, result.stderr
    probe = json.loads(result.stdout)
    helped, loaded = probe["helped"], probe["modules"]
    # The walk reached the top, every command and the actions of those that have them.
    for line in ("", "run", "backfill", "ls", "erase", "export", "web", "doctor",
                 "retention run", "hold add", "audit verify", "state backup"):  # fmt: skip
        assert line in helped, helped
    assert "archiver.commands.backfill" in loaded and "archiver.config" in loaded
    heavy = [module for module in loaded if _heavy(module)]
    assert heavy == [], f"parsing loaded {len(heavy)} heavy modules, e.g. {heavy[:10]}"


def test_the_audit_parser_offers_every_access_action() -> None:
    """`audit --action` lists the access log's actions without loading the state part: its own
    copy of the names, kept equal to the state's here."""
    from archiver.commands.audit import ACTIONS
    from archiver.state import ACCESS_ACTIONS

    assert ACTIONS == ACCESS_ACTIONS
