"""The work folder: one per process, swept only when stale, and never a place where anything but
our own work files is deleted (issue 12 item 2, issue 11 item 5)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import AsyncIterator
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from support import Rig, daemon_toml, json_events, run_archiver, start_rig

from archiver.config import ConfigError, S3Config, load_config, parse_config
from archiver.lab.seaweed import SeaweedS3
from archiver.lab.simulator import SimulatorOptions, SimulatorThread
from archiver.observe import NullObserver
from archiver.pipeline.workdir import WorkDir, is_work_file, sweep
from archiver.state.ledger import Ledger

PASSWORD = "Workdir-Secret-5150"
DAY = date(2016, 11, 18)
IST = ZoneInfo("Europe/Istanbul")
TOKEN = "0123456789abcdef01234567"
MINIMAL: dict[str, Any] = {
    "pbx": {"url": "http://127.0.0.1:9", "username": "u", "password_env": "X"},
    "s3": {"bucket": "calls"},
}


def _state(tmp_path: Path, **state: str) -> dict[str, Any]:
    return {**MINIMAL, "state": {"path": str(tmp_path / "ledger.sqlite3"), **state}}


def test_a_work_dir_holding_the_state_or_a_system_folder_is_refused(tmp_path: Path) -> None:
    """Issue 11 item 5: work_dir pointed at the ledger's folder deleted the ledger and its WAL."""
    with pytest.raises(ConfigError, match=r"work_dir .* contains the state file"):
        parse_config(_state(tmp_path, work_dir=str(tmp_path)), "x.toml")
    with pytest.raises(ConfigError, match="contains the state file"):
        parse_config(_state(tmp_path, work_dir=str(tmp_path / "sub" / "..")), "x.toml")
    for system in ("/", "/var/lib", "/etc", "/tmp", str(Path.home())):
        with pytest.raises(ConfigError, match="is a system folder"):
            parse_config(_state(tmp_path, work_dir=system), "x.toml")
    # A symlink to the state's folder is caught too.
    (tmp_path / "alias").symlink_to(tmp_path)
    with pytest.raises(ConfigError, match="contains the state file"):
        parse_config(_state(tmp_path, work_dir=str(tmp_path / "alias")), "x.toml")
    ok = parse_config(_state(tmp_path, work_dir=str(tmp_path / "work")), "x.toml")
    assert ok.state.work_path == tmp_path / "work"


def test_check_config_refuses_it_with_its_line(tmp_path: Path) -> None:
    config = tmp_path / "a.toml"
    config.write_text(
        '[pbx]\nurl = "http://127.0.0.1:9"\nusername = "u"\npassword_env = "X"\n'
        f'[s3]\nbucket = "calls"\n[state]\npath = "{tmp_path}/ledger.sqlite3"\n'
        f'work_dir = "{tmp_path}"\n',
        "utf-8",
    )
    with pytest.raises(ConfigError) as caught:
        load_config(config)
    assert caught.value.problems == [
        f"{config}:7: at 'state': work_dir {str(tmp_path)!r} contains the state file: give the "
        "work files a folder of their own (e.g. /var/cache/archiver)"
    ]


def test_only_our_own_work_files_are_deleted(tmp_path: Path) -> None:
    root = tmp_path / "work"
    root.mkdir()
    ours = [f"{TOKEN}.src", f"{TOKEN}.src.part", f"{TOKEN}.mp3", f".{TOKEN}.mp3.k2j_x9.part"]
    theirs = ["ledger.sqlite3", "ledger.sqlite3-wal", "notes.txt", f"{TOKEN}.wav", "x.mp3"]
    for name in ours + theirs:
        (root / name).write_bytes(b"x")
    assert all(is_work_file(name) for name in ours)
    assert not any(is_work_file(name) for name in theirs)
    assert sweep(root) == len(ours)
    assert sorted(p.name for p in root.iterdir()) == sorted(theirs)


def test_a_live_process_folder_is_left_alone_a_dead_ones_is_swept(tmp_path: Path) -> None:
    root, state = tmp_path / "work", tmp_path / "ledger.sqlite3"
    first, _ = WorkDir.claim(root, state)
    (first.path / f"{TOKEN}.src").write_bytes(b"in flight")
    second, removed = WorkDir.claim(root, state)
    assert removed == 0 and (first.path / f"{TOKEN}.src").exists()
    assert first.path != second.path
    # A folder whose owner died (SIGKILL): its lock is free, so it is stale.
    dead = root / "proc-4242-deadbeef"
    dead.mkdir()
    (dead / ".lock").write_bytes(b"")
    (dead / f"{TOKEN}.mp3").write_bytes(b"left over")
    third, removed = WorkDir.claim(root, state)
    assert removed == 1 and not dead.exists() and (first.path / f"{TOKEN}.src").exists()
    for work in (first, second, third):
        work.release()
    assert list(root.iterdir()) == []


class _DeleteAfterDownload(NullObserver):
    """Removes the downloaded file as soon as it lands: what a second process emptying the work
    folder did to the daemon."""

    def __init__(self, work: Path) -> None:
        self.work = work

    def downloaded(self, pbx: str, size_bytes: int) -> None:
        for path in self.work.rglob("*.src"):
            path.unlink()


@pytest.fixture
async def rig(
    tmp_path: Path, s3_config: S3Config, s3_env: dict[str, str], seaweed: SeaweedS3
) -> AsyncIterator[Rig]:
    options = SimulatorOptions(username="admin", password=PASSWORD, seed=4, start=DAY,
                               per_day=3, max_duration_s=10, odd_names=False)  # fmt: skip
    rig = await start_rig(options, s3_config, seaweed, tmp_path)
    try:
        yield rig
    finally:
        await rig.runner.cleanup()


async def test_a_vanished_work_file_is_never_a_permanent_failure(rig: Rig) -> None:
    """Issue 12 item 2: the daemon logged FileNotFoundError and three recordings ended failed
    for good (ffmpeg could not read the source: 'transcode failed', no retry)."""
    (report,) = await rig.archive([DAY], observer=_DeleteAfterDownload(rig.cfg.state.work_path))
    assert report.failed > 0 and report.archived == 0
    ledger = Ledger.open(rig.cfg.state.path)
    try:
        failures = ledger.recent_failures(100)
    finally:
        ledger.close()
    assert failures and all(entry.retryable for entry in failures), failures
    assert {entry.last_error for entry in failures} == {
        "a work file vanished during the run; taken again"
    }
    # The next run takes them again, and they land.
    (again,) = await rig.archive([DAY])
    assert again.failed == 0 and again.archived == report.failed


def test_backfill_next_to_a_running_daemon_loses_nothing(
    tmp_path: Path, s3_env: dict[str, str], seaweed: SeaweedS3, bucket: str
) -> None:
    """Issue 12 item 2: `archiver backfill` next to `archiver run` emptied the daemon's work
    folder at its start and its exit; recordings ended failed for good."""
    yesterday = datetime.now(IST).date() - timedelta(days=1)
    options = SimulatorOptions(username="admin", password=PASSWORD, seed=8, start=yesterday,
                               per_day=16, max_duration_s=20, delay_ms=40,
                               timezone=IST.key)  # fmt: skip
    env = {**os.environ, **s3_env, "TEST_PBX_PASSWORD": PASSWORD}
    with SimulatorThread(options) as sim:
        # The daemon polls today and yesterday; the backfill takes yesterday at the same time.
        config = tmp_path / "a.toml"
        config.write_text(
            daemon_toml(sim.base_url, seaweed, bucket, tmp_path, poll={"interval_s": 3600}),
            "utf-8",
        )
        daemon = subprocess.Popen(
            [sys.executable, "-m", "archiver", "run", "--config", str(config)],
            env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )  # fmt: skip
        lines: list[str] = []
        started = threading.Event()

        def read() -> None:
            assert daemon.stdout is not None
            for line in daemon.stdout:
                lines.append(line)
                if '"listed"' in line and yesterday.isoformat() in line:
                    started.set()

        reader = threading.Thread(target=read, daemon=True)
        reader.start()
        try:
            assert started.wait(60), "".join(lines)
            backfill = run_archiver("backfill", "--config", str(config), "--from",
                                    yesterday.isoformat(), env=env)  # fmt: skip
            time.sleep(1)
        finally:
            daemon.send_signal(signal.SIGTERM)
            _, err = daemon.communicate(timeout=60)
            reader.join(10)
    out = "".join(lines)
    assert backfill.returncode == 0, backfill.stdout + backfill.stderr
    assert daemon.returncode == 0, err
    assert "FileNotFoundError" not in out + err + backfill.stdout
    for events in (json_events(out), json_events(backfill.stdout)):
        assert not [e for e in events if e["event"] in ("failed", "work_file_vanished")]
    ledger = Ledger.open(tmp_path / "ledger.sqlite3")
    try:
        counts = ledger.counts()
    finally:
        ledger.close()
    assert counts["failed"] == 0 and counts["verified"] > 0, counts
    assert list((tmp_path / "work").iterdir()) == []
