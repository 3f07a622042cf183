"""The daily audit unit and its timer: systemd-analyze accepts both, the service scores 2.0 or
better, it runs the three audit commands as the daemon's user, and each command it names exists
(parsed by `archiver`'s own parser)."""

from __future__ import annotations

import re
import shlex
import subprocess
import sys
from pathlib import Path

from test_systemd_unit import INSTALLED_BINARY, ROOT, _analyze

SERVICE = ROOT / "systemd" / "archiver-audit.service"
TIMER = ROOT / "systemd" / "archiver-audit.timer"


def _runnable(tmp_path: Path) -> tuple[Path, Path]:
    here = Path(sys.executable).parent / "archiver"
    service, timer = tmp_path / SERVICE.name, tmp_path / TIMER.name
    service.write_text(SERVICE.read_text(encoding="utf-8").replace(INSTALLED_BINARY, str(here)))
    timer.write_text(TIMER.read_text(encoding="utf-8"))
    return service, timer


def test_systemd_analyze_verify_and_security(tmp_path: Path) -> None:
    service, timer = _runnable(tmp_path)
    result = subprocess.run([_analyze(), "verify", str(service), str(timer)],
                            capture_output=True, text=True, timeout=60, check=False)  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert "archiver-audit" not in result.stderr, result.stderr
    security = subprocess.run([_analyze(), "security", "--offline=yes", str(service)],
                              capture_output=True, text=True, timeout=60, check=False)  # fmt: skip
    match = re.search(r"Overall exposure level for archiver-audit\.service: ([0-9.]+)",
                      security.stdout)  # fmt: skip
    assert match is not None, security.stdout + security.stderr
    print(f"systemd-analyze security archiver-audit: exposure {match.group(1)}")
    assert float(match.group(1)) <= 2.0


def test_the_commands_it_runs_exist() -> None:
    from archiver.cli import _parser

    commands = [line.split("=", 1)[1] for line in SERVICE.read_text().splitlines()
                if line.startswith("ExecStart=")]  # fmt: skip
    assert len(commands) == 3
    for command in commands:
        argv = shlex.split(command)[1:]
        parsed = _parser(argv).parse_args(argv)
        assert parsed.handler is not None, command
