"""The whole loop, as an administrator runs it: `archiver call` → simulated PBX → callbacks to
a running `archiver run` → stored → the answered call's recording archived in SeaweedFS with
its dial status in the metadata."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from support import daemon_toml, free_port, run_archiver, wait_for

from archiver.lab.seaweed import SeaweedS3
from archiver.lab.simulator import SimulatorOptions, SimulatorThread

PASSWORD = "E2e-Pbx-Secret-31337"
TOKEN = "e2e-callback-token-4f1c9a7b2d"


def _config(path: Path, sim_url: str, s3: SeaweedS3, bucket: str, http_port: int) -> None:
    text = daemon_toml(
        sim_url, s3, bucket, path.parent / "state",
        poll={"lookback_days": 0},
        http={"listen": f"127.0.0.1:{http_port}"},
        autocall={"max_retries": 1, "retry_interval_s": 5},
        callbacks={"enabled": True, "token": TOKEN},
    )  # fmt: skip
    path.write_text(text, "utf-8")


def _archiver(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return run_archiver(*args, env=env, timeout_s=60)


def _dialled_objects(s3: SeaweedS3, bucket: str) -> list[dict[str, Any]]:
    client = s3.client()
    heads = []
    for item in client.list_objects_v2(Bucket=bucket).get("Contents", []):
        heads.append(client.head_object(Bucket=bucket, Key=item["Key"])["Metadata"])
    return heads


def test_call_callbacks_and_recording_with_dial_status(
    tmp_path: Path, s3_env: dict[str, str], seaweed: SeaweedS3, bucket: str
) -> None:
    env = {**os.environ, **s3_env, "TEST_PBX_PASSWORD": PASSWORD}
    http_port = free_port()
    options = SimulatorOptions(
        username="admin", password=PASSWORD, seed=3, days=0, odd_names=False, junk=False,
        callback_url=f"http://127.0.0.1:{http_port}/pbx/call-result/{TOKEN}",
        dial_outcomes="ANSWER=1", dial_step_ms=20, dial_time_scale=0.05, answer_duration_s=2,
    )  # fmt: skip
    config = tmp_path / "archiver.toml"
    with SimulatorThread(options) as sim:
        _config(config, sim.base_url, seaweed, bucket, http_port)
        daemon = subprocess.Popen(
            [sys.executable, "-m", "archiver", "run", "--config", str(config)],
            env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )  # fmt: skip
        try:
            wait_for(f"http://127.0.0.1:{http_port}/healthz")
            placed = _archiver("call", "--config", str(config), "03123320404", "--json", env=env)
            assert placed.returncode == 0, placed.stderr
            call = json.loads(placed.stdout)
            placed_as = (call["number"], call["state"], call["params"]["mr"])
            assert placed_as == ("903123320404", "placed", "1")
            deadline = time.monotonic() + 45
            objects: list[dict[str, Any]] = []
            while not objects:
                assert time.monotonic() < deadline, "the answered call was never archived"
                time.sleep(0.5)
                objects = _dialled_objects(seaweed, bucket)
        finally:
            daemon.send_signal(signal.SIGTERM)
            out, err = daemon.communicate(timeout=30)
        played = sim.dialer.calls
    assert daemon.returncode == 0, err
    assert len(played) == 1 and played[0].failed_sends == 0
    (meta,) = objects
    assert meta["callee"] == "903123320404" and meta["source-name"] == played[0].recording
    assert (meta["dial-status"], meta["autocall-id"]) == ("ANSWER", str(call["id"]))

    listed = _archiver("calls", "--config", str(config), "--json", env=env)
    (summary,) = json.loads(listed.stdout)["calls"]
    assert (summary["status"], summary["ended"], summary["events"]) == (
        "ANSWER", True, len(played[0].sent),
    )  # fmt: skip
    text = _archiver("calls", "--config", str(config), "--number", "+903123320404", env=env)
    assert "ANSWER" in text.stdout and "1 call(s)" in text.stdout
    # The token and the password are in no log line; every callback was logged as an event.
    assert TOKEN not in out + err and PASSWORD not in out + err + placed.stderr
    events = [json.loads(line) for line in out.splitlines() if line.startswith("{")]
    assert sum(e["event"] == "call_result" for e in events) == len(played[0].sent)


def test_call_refuses_bad_numbers_and_reports_unreachable_pbx(
    tmp_path: Path, s3_env: dict[str, str], seaweed: SeaweedS3
) -> None:
    env = {**os.environ, **s3_env, "TEST_PBX_PASSWORD": PASSWORD}
    config = tmp_path / "archiver.toml"
    _config(config, f"http://127.0.0.1:{free_port()}", seaweed, "unused-bucket", free_port())
    bad = _archiver("call", "--config", str(config), "0312 332 04 04", env=env)
    assert bad.returncode == 1 and "digits only" in bad.stderr
    down = _archiver("call", "--config", str(config), "903123320404", env=env)
    assert down.returncode == 5 and "cannot connect" in down.stderr
    listed = _archiver("calls", "--config", str(config), "--json", "--since", "2020-01-01", env=env)
    (refused,) = json.loads(listed.stdout)["calls"]
    assert refused["state"] == "refused" and "cannot connect" in refused["reply"]
    later = _archiver("calls", "--config", str(config), "--since", "2099-01-01T00:00", env=env)
    assert later.returncode == 0 and later.stdout.strip() == "0 call(s)"
    past = _archiver("call", "--config", str(config), "903123320404", "--at", "2020-01-01 10:00",
                     env=env)  # fmt: skip
    assert past.returncode == 1 and "in the past" in past.stderr
