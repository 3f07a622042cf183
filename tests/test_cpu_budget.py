"""The CPU budget per recording by stage (issue 24 item 1): what `scripts/bench` prints.

A real backfill (simulator over HTTP, SeaweedFS, ffmpeg) with ARCHIVER_CPU_BUDGET set writes a
budget whose stages each saw their own work; without the variable nothing is wrapped.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import hashlib
import json
import os
import subprocess
import sys
import time
from datetime import date
from pathlib import Path

from support import daemon_toml, run_archiver

from archiver import cpu_budget
from archiver.lab.seaweed import SeaweedS3
from archiver.lab.simulator import SimulatorOptions, SimulatorThread
from archiver.state.ledger import Ledger

PASSWORD = "Budget-Secret-2424"
DAY = date(2016, 11, 18)


def _spin(seconds: float) -> None:
    """Spend about `seconds` of this thread's CPU."""
    until = time.thread_time() + seconds
    while time.thread_time() < until:
        pass


def test_a_nested_section_counts_once_in_the_innermost_stage() -> None:
    budget = cpu_budget.Budget()
    with budget.section("upload"):
        _spin(0.05)
        with budget.section("hashing"):
            _spin(0.05)
    stages = budget.as_dict()["stages_cpu_s"]
    assert 0.045 < stages["hashing"] < 0.09, stages
    assert 0.045 < stages["upload"] < 0.09, stages  # its own 0.05, not the hashing's too
    assert stages["download"] == 0.0


def test_off_unless_the_environment_names_a_file() -> None:
    """Without ARCHIVER_CPU_BUDGET nothing of the process is wrapped (a fresh interpreter, since
    `install` wraps for good)."""
    check = (
        "import asyncio, concurrent.futures, hashlib, sys\n"
        "from archiver import cli\n"
        "before = (asyncio.Handle._run, concurrent.futures.ThreadPoolExecutor.submit,"
        " hashlib.sha256)\n"
        "cli.main(['check-config', '--config', '/nonexistent.toml'])\n"
        "after = (asyncio.Handle._run, concurrent.futures.ThreadPoolExecutor.submit,"
        " hashlib.sha256)\n"
        "sys.exit(0 if before == after else 9)\n"
    )
    env = {k: v for k, v in os.environ.items() if k != cpu_budget.ENV}
    done = subprocess.run([sys.executable, "-c", check], env=env, capture_output=True, check=False)
    assert done.returncode == 0, done.stderr
    # And this process (never installed) has the originals.
    assert asyncio.Handle._run.__qualname__ == "Handle._run"
    assert concurrent.futures.ThreadPoolExecutor.submit.__qualname__.startswith("ThreadPool")
    assert not isinstance(hashlib.sha256(), cpu_budget._MeteredHash)


def test_a_backfill_writes_its_budget_by_stage(
    tmp_path: Path, s3_env: dict[str, str], seaweed: SeaweedS3, bucket: str
) -> None:
    options = SimulatorOptions(
        username="admin", password=PASSWORD, seed=24, start=DAY, per_day=6, max_duration_s=30,
        odd_names=False, junk=False,
    )  # fmt: skip
    out = tmp_path / "budget.json"
    env = {**os.environ, **s3_env, "TEST_PBX_PASSWORD": PASSWORD, cpu_budget.ENV: str(out)}
    with SimulatorThread(options) as sim:
        config = tmp_path / "a.toml"
        config.write_text(daemon_toml(sim.base_url, seaweed, bucket, tmp_path), "utf-8")
        done = run_archiver("backfill", "--config", str(config), "--from", DAY.isoformat(), env=env)
    assert done.returncode == 0, done.stdout + done.stderr
    ledger = Ledger.open(tmp_path / "ledger.sqlite3")
    try:
        verified = ledger.counts()["verified"]
    finally:
        ledger.close()
    assert verified >= 5
    budget = json.loads(out.read_text())
    stages = budget["stages_cpu_s"]
    assert set(cpu_budget.STAGES) <= set(stages)
    for stage in ("download", "hashing", "transcode", "upload", "state", "logging"):
        assert stages[stage] > 0, (stage, stages)  # each stage caught its own work
    assert budget["children_cpu_s"] > 0.01 * verified  # ffmpeg encoded every one
    counts = budget["counts"]
    assert counts.get("process:ffmpeg", 0) >= 1
    # HEAD before and after each PUT: what the budget prices as the upload's requests.
    assert counts["s3:PutObject"] == verified
    assert counts["s3:HeadObject"] >= 2 * verified
    attributed = sum(stages.values())
    assert 0 < attributed <= budget["process_cpu_s"] + 1e-6
    assert budget["unattributed_cpu_s"] >= -1e-6
