"""`archiver ls --folders` and `archiver ls --folder NAME`: the document's first two calls, parsed,
through the same allow-listed command builder, as an administrator runs them."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from datetime import date
from pathlib import Path

import pytest
from support import daemon_toml, run_archiver

from archiver.lab.seaweed import SeaweedS3
from archiver.lab.simulator import SimulatorOptions, SimulatorThread

PASSWORD = "Folders-Secret-3131"
DAY = date(2016, 11, 18)


@pytest.fixture(scope="module")
def sim() -> Iterator[SimulatorThread]:
    options = SimulatorOptions(
        username="admin", password=PASSWORD, seed=8, start=DAY, per_day=6, max_duration_s=20,
        cgi_strict=True,
    )  # fmt: skip
    with SimulatorThread(options) as running:
        yield running


@pytest.fixture
def config(tmp_path: Path, sim: SimulatorThread, seaweed: SeaweedS3) -> Path:
    path = tmp_path / "a.toml"
    path.write_text(daemon_toml(sim.base_url, seaweed, "unused", tmp_path), "utf-8")
    return path


@pytest.fixture
def env() -> dict[str, str]:
    return {**os.environ, "TEST_PBX_PASSWORD": PASSWORD}


def test_folders(config: Path, env: dict[str, str], sim: SimulatorThread) -> None:
    result = run_archiver("ls", "--folders", "--json", "--config", str(config), env=env)
    assert result.returncode == 0, result.stderr
    listed = json.loads(result.stdout)
    assert listed == {"folders": sim.corpus.folders(), "invalid": 0}
    assert sim.request_lines[-1].startswith(
        "GET /cgi-bin/system_cmd.cgi?cmd=sh%20/etc/scripts/shell_scripts.sh%20list_files%20"
        "/var/spool/asterisk/monitor/recording&username=admin&password="
    )
    text = run_archiver("ls", "--folders", "--config", str(config), env=env)
    assert text.stdout.splitlines()[-1] == f"{len(listed['folders'])} folder(s), 0 invalid line(s)"
    assert PASSWORD not in result.stdout + result.stderr + text.stdout + text.stderr


def test_one_folder_parsed(config: Path, env: dict[str, str], sim: SimulatorThread) -> None:
    folder = sim.corpus.folders()[0]
    result = run_archiver("ls", "--folder", folder, "--json", "--config", str(config), env=env)
    assert result.returncode == 0, result.stderr
    rows = json.loads(result.stdout)["recordings"]
    expected = {r.name for r in sim.corpus.recordings() if r.valid and r.folder == folder}
    assert {row["name"] for row in rows} == expected and expected
    assert all(row["folder"] == folder for row in rows)
    assert f"list_files%20/var/spool/asterisk/monitor/recording/{folder}&" in sim.request_lines[-1]


@pytest.mark.parametrize("folder", ["../etc", "a b", "x;reboot", "trunk/../../etc"])
def test_a_folder_outside_the_allow_list_is_never_sent(
    config: Path, env: dict[str, str], sim: SimulatorThread, folder: str
) -> None:
    before = len(sim.request_lines)
    result = run_archiver("ls", "--folder", folder, "--config", str(config), env=env)
    assert result.returncode == 1
    assert "folder must be a trunk folder name" in result.stderr
    assert len(sim.request_lines) == before
