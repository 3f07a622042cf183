"""The web archive's unit: systemd-analyze accepts it and scores it 2.0 or better, it shares the
daemon's dynamic user and state directory, holds no PBX password, and the README and the sample
config name what it loads."""

from __future__ import annotations

import re
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
from test_systemd_unit import INSTALLED_BINARY, README, ROOT, SAMPLE, _analyze

UNIT = ROOT / "systemd" / "archiver-web.service"


def _settings(unit: Path = UNIT) -> dict[str, list[str]]:
    settings: dict[str, list[str]] = {}
    for line in unit.read_text(encoding="utf-8").splitlines():
        if line and not line.startswith(("#", "[")) and "=" in line:
            key, value = line.split("=", 1)
            settings.setdefault(key, []).append(value)
    return settings


@pytest.fixture
def runnable_unit(tmp_path: Path) -> Path:
    here = Path(sys.executable).parent / "archiver"
    assert here.exists()
    copy = tmp_path / "archiver-web.service"
    copy.write_text(UNIT.read_text(encoding="utf-8").replace(INSTALLED_BINARY, str(here)))
    return copy


def test_systemd_analyze_verify(runnable_unit: Path) -> None:
    result = subprocess.run(
        [_analyze(), "verify", str(runnable_unit)],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert "archiver-web.service" not in result.stderr, result.stderr


def test_systemd_analyze_security_exposure(runnable_unit: Path) -> None:
    result = subprocess.run(
        [_analyze(), "security", "--offline=yes", str(runnable_unit)],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    pattern = r"Overall exposure level for archiver-web\.service: ([0-9.]+)"
    match = re.search(pattern, result.stdout)
    assert match is not None, result.stdout + result.stderr
    exposure = float(match.group(1))
    print(f"systemd-analyze security --offline=yes archiver-web: exposure {exposure}")
    assert exposure <= 2.0


def test_shares_the_state_and_never_the_pbx_password() -> None:
    settings = _settings()
    daemon = _settings(ROOT / "systemd" / "archiver.service")
    assert settings["ExecStart"][0].startswith(f"{INSTALLED_BINARY} web --config")
    assert "ExecStartPre" not in settings  # check-config would need the PBX password
    assert settings["DynamicUser"] == ["yes"] and settings["User"] == ["archiver"]
    assert settings["StateDirectory"] == daemon["StateDirectory"]
    credentials = dict(value.split(":", 1) for value in settings["LoadCredential"])
    assert "pbx-password" not in credentials
    assert (
        credentials["s3-credentials"]
        != dict(value.split(":", 1) for value in daemon["LoadCredential"])["s3-credentials"]
    )  # a read-only key of its own
    sample = tomllib.loads(SAMPLE.read_text(encoding="utf-8"))
    assert sample["web"]["users_credential"] in credentials
    assert credentials["web-users"] == sample["web"]["users_file"]
    readme = README.read_text(encoding="utf-8")
    section = readme[readme.index("## The web archive") :]
    section = section[: section.index("\n## ", 5)]
    for needle in ("systemd/archiver-web.service", "systemctl enable --now archiver-web",
                   "s3:GetObject", "archiver web passwd", "proxy_pass",
                   *credentials.values()):  # fmt: skip
        assert needle in section, needle
