"""`archiver run` and the lifecycle, end to end (the PBX simulator, the real pipeline, SeaweedFS
with Object Lock, SQLite): a recording past its period is destroyed by the daemon's periodic
destruction and counted in /metrics; uploads carry the store's retain-until date, and a legal
hold when a hold covers them (added before they were archived); a destroyed name the PBX still
lists is never archived again."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
import uuid
from datetime import datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

from retention_support import archive, recording
from support import daemon_toml, free_port, metric_value, wait_for

from archiver.config import load_config
from archiver.lab.seaweed import SeaweedS3
from archiver.lab.simulator import SimulatorOptions, SimulatorThread
from archiver.s3 import S3Store
from archiver.state import open_state

PASSWORD = "Retention-Secret-1"


def test_the_daemon_destroys_periodically_and_uploads_carry_the_lock(
    tmp_path: Path, s3_env: dict[str, str], seaweed: SeaweedS3
) -> None:
    bucket = f"lock-{uuid.uuid4().hex[:16]}"
    seaweed.create_bucket(bucket, object_lock=True)
    tz = ZoneInfo("Europe/Istanbul")
    yesterday = datetime.now(tz).date() - timedelta(days=1)
    options = SimulatorOptions(username="admin", password=PASSWORD, seed=5, start=yesterday,
                               days=1, per_day=4, max_duration_s=15, timezone=tz.key,
                               odd_names=False, junk=False)  # fmt: skip
    port = free_port()
    env = {**os.environ, **s3_env, "TEST_PBX_PASSWORD": PASSWORD}
    with SimulatorThread(options) as sim:
        calls = [r for r in sim.corpus.recordings() if r.valid]
        # A number (not an extension: the fake old recording's caller is extension 100).
        held_number = next(n for r in calls for n in (r.caller, r.callee) if len(n) > 6)
        config = tmp_path / "a.toml"
        text = daemon_toml(
            sim.base_url, seaweed, bucket, tmp_path, http={"listen": f"127.0.0.1:{port}"},
            destruction={"every_days": 0.0001},
        )  # fmt: skip
        # 3 days: the simulated calls are yesterday's, so start + 3 days is always ahead; with 1
        # day a call made earlier in the day than now had nothing left to lock (no retain-until,
        # by design: lock.py), and the test failed by the time of day it ran.
        text = text.replace("[s3]\n", "[s3]\nobject_lock = true\nretain_days = 3\n")
        config.write_text(text + "[[retention]]\nkeep_days = 365\n", "utf-8")
        cfg = load_config(config)
        with contextlib.closing(open_state(cfg)) as state:
            old = archive(state, cfg, recording(400, 1))
            state.holds.add("DAVA-1", by="test", number=held_number)
        # The daemon logs every poll: to a file, so that a full pipe never blocks it.
        log_path = tmp_path / "daemon.log"
        log_file = log_path.open("w")
        process = subprocess.Popen(
            [sys.executable, "-m", "archiver", "run", "--config", str(config)],
            env=env, stdout=log_file, stderr=subprocess.STDOUT, text=True,
        )  # fmt: skip
        try:
            base = f"http://127.0.0.1:{port}"
            deadline = time.monotonic() + 90
            while True:
                body = wait_for(f"{base}/metrics")
                destroyed = metric_value(body, "archiver_destroyed_total", reason="retention")
                archived = metric_value(body, "archiver_recordings_total", pbx="pbx",
                                        outcome="archived")  # fmt: skip
                if destroyed >= 1 and archived >= len(calls):
                    break
                assert time.monotonic() < deadline, body
                time.sleep(0.3)
            assert metric_value(body, "archiver_destroyed_total", reason="erasure") == 0
        finally:
            process.send_signal(signal.SIGTERM)
            process.wait(timeout=60)
            log_file.close()
    out = log_path.read_text("utf-8")
    assert process.returncode == 0, out[-3000:]
    assert '"event": "destroyed"' in out and '"event": "destruction_run"' in out
    store = S3Store(cfg.s3)
    with contextlib.closing(open_state(cfg)) as state:
        row = state.ledger.get(old.rec.key)
        assert row is not None and row.state == "destroyed"
        assert store.version_ids(old.entry.object_key) == []
        logged = state.destructions.of_recording(old.rec.key)
        assert logged is not None and logged.command == "archiver run"
        held_keys = {
            entry.object_key for hold in state.holds.listed() for entry in state.holds.entries(hold)
        }
        assert held_keys
        for entry in state.destructions.archived(
            started_before_s=2**40, after=None, limit=100
        ):  # every recording archived by the daemon
            lock = store.lock_state(entry.object_key)
            assert lock.mode == "GOVERNANCE" and lock.retain_until is not None
            assert lock.legal_hold == (entry.object_key in held_keys), entry.object_key
        # The PBX lists nothing of 400 days ago; a destroyed name it lists is never taken again
        # (tests/test_retention_state.py); here, the run left it destroyed.
        assert state.ledger.counts()["destroyed"] == 1
    # The store refuses to delete what it holds, whatever archiver thinks.
    for key in held_keys:
        assert store.lock_state(key).legal_hold
