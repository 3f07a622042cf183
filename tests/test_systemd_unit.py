"""The shipped unit: systemd-analyze accepts it, scores it 2.0 or better, and the README's install
steps and the sample config name the same paths it does.

systemd-analyze comes with Debian's `systemd` package (scripts/bootstrap installs it as root when
missing); the service itself cannot run here, so these are the checks an administrator's systemd
would make before starting it.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
UNIT = ROOT / "systemd" / "archiver.service"
README = ROOT / "README.md"
SAMPLE = ROOT / "config.example.toml"
INSTALLED_BINARY = "/opt/archiver/venv/bin/archiver"


def _analyze() -> str:
    path = shutil.which("systemd-analyze")
    assert path is not None, "systemd-analyze missing: run scripts/bootstrap as root (apt systemd)"
    return path


def _settings() -> dict[str, list[str]]:
    settings: dict[str, list[str]] = {}
    for line in UNIT.read_text(encoding="utf-8").splitlines():
        if line and not line.startswith(("#", "[")) and "=" in line:
            key, value = line.split("=", 1)
            settings.setdefault(key, []).append(value)
    return settings


@pytest.fixture
def runnable_unit(tmp_path: Path) -> Path:
    """The unit with its binary pointed at this venv's `archiver` (verify checks it exists)."""
    here = Path(sys.executable).parent / "archiver"
    assert here.exists()
    text = UNIT.read_text(encoding="utf-8").replace(INSTALLED_BINARY, str(here))
    copy = tmp_path / "archiver.service"
    copy.write_text(text, encoding="utf-8")
    return copy


def test_systemd_analyze_verify(runnable_unit: Path) -> None:
    result = subprocess.run(
        [_analyze(), "verify", str(runnable_unit)],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert "archiver.service" not in result.stderr, result.stderr  # no warnings about it


def test_systemd_analyze_security_exposure(runnable_unit: Path) -> None:
    result = subprocess.run(
        [_analyze(), "security", "--offline=yes", str(runnable_unit)],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    match = re.search(r"Overall exposure level for archiver\.service: ([0-9.]+)", result.stdout)
    assert match is not None, result.stdout + result.stderr
    exposure = float(match.group(1))
    print(f"systemd-analyze security --offline=yes: exposure {exposure}")
    assert exposure <= 2.0


def test_unit_is_a_notify_service_with_its_directories_and_credentials() -> None:
    settings = _settings()
    assert settings["Type"] == ["notify"] and settings["NotifyAccess"] == ["main"]
    assert settings["WatchdogSec"] and settings["ExecStartPre"][0].startswith(
        f"{INSTALLED_BINARY} check-config"
    )
    assert settings["ExecStart"][0].startswith(f"{INSTALLED_BINARY} run")
    assert settings["StateDirectory"] == ["archiver"] and settings["CacheDirectory"] == ["archiver"]
    text = UNIT.read_text(encoding="utf-8")
    # Every relaxation of the hardening says why, in a comment right above it.
    for relaxed in ("RestrictAddressFamilies=AF_INET", "IPAddressDeny=any"):
        before = text[: text.index(relaxed)].rstrip().splitlines()[-1]
        assert before.startswith("#"), relaxed


def test_readme_sample_config_and_unit_agree() -> None:
    settings = _settings()
    readme = README.read_text(encoding="utf-8")
    section = readme[readme.index("## Install as a service") :]
    section = section[: section.index("\n## ", 5)]
    config_path = settings["ExecStart"][0].split("--config ")[1].split()[0]
    assert config_path == "/etc/archiver/archiver.toml"
    for needle in (
        INSTALLED_BINARY.removesuffix("/bin/archiver"),
        "apt-get install -y ffmpeg",
        config_path,
        "systemctl enable --now archiver",
        "journalctl -u archiver",
        "systemd/archiver.service",
    ):
        assert needle in section, needle
    sample = tomllib.loads(SAMPLE.read_text(encoding="utf-8"))
    credentials = dict(value.split(":", 1) for value in settings["LoadCredential"])
    # The sample's PBX password is the unit's credential, and the README creates its file.
    assert sample["pbx"][0]["credential"] in credentials
    for source in credentials.values():
        assert f"install -m 0600 /dev/null {source}" in section, source
    # The ledger and the work files are in the directories systemd creates for the service.
    assert Path(sample["state"]["path"]).parent == Path("/var/lib") / settings["StateDirectory"][0]
    assert Path(sample["state"]["work_dir"]) == Path("/var/cache") / settings["CacheDirectory"][0]
    listen = sample["http"]["listen"]
    assert f"curl -s http://{listen}/metrics" in section
