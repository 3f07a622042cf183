"""End to end (issue 23 item 2): a real Prometheus scrapes a real `archiver run` whose PBX (the
simulator) refuses the password, evaluates the shipped rules, and `ArchiverPbxCredentialsRefused`
goes pending, then firing; restarted with the right password, the alert resolves.

The rules are the shipped file with two changes that keep the test well under a minute: the
refusal alert's `for:` is 5 s instead of 5 minutes, and Prometheus scrapes and evaluates every
second. The expression, labels and annotations are the shipped ones.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from support import daemon_toml, free_port, http_get, wait_for

from archiver.lab.seaweed import SeaweedS3
from archiver.lab.simulator import SimulatorOptions, SimulatorThread

RULES = Path(__file__).resolve().parent.parent / "ops" / "prometheus" / "archiver-rules.yml"
ALERT = "ArchiverPbxCredentialsRefused"
TEST_FOR = "5s"
PASSWORD = "Alerting-Secret-4242"


def _rules_with_short_for(text: str) -> str:
    """The shipped rules with `ALERT`'s `for:` set to `TEST_FOR` (only that alert's)."""
    changed, count = re.subn(
        rf"(- alert: {ALERT}\n\s+expr: [^\n]+\n\s+for: )\w+", rf"\g<1>{TEST_FOR}", text
    )
    assert count == 1, "the refusal alert's block changed shape: adjust this test"
    return changed


@pytest.fixture
def prometheus(tmp_path: Path) -> Iterator[tuple[Path, int]]:
    """A config folder and port for a Prometheus the test starts (and this fixture stops)."""
    binary = shutil.which("prometheus")
    assert binary is not None, "prometheus is missing: scripts/bootstrap installs Debian's"
    folder = tmp_path / "prometheus"
    folder.mkdir()
    yield folder, free_port()


def _start_prometheus(folder: Path, port: int, target_port: int) -> subprocess.Popen[bytes]:
    (folder / "archiver-rules.yml").write_text(
        _rules_with_short_for(RULES.read_text("utf-8")), "utf-8"
    )
    (folder / "prometheus.yml").write_text(
        "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\n"
        "rule_files:\n  - archiver-rules.yml\n"
        "scrape_configs:\n  - job_name: archiver\n"
        f"    static_configs:\n      - targets: ['127.0.0.1:{target_port}']\n",
        "utf-8",
    )
    binary = shutil.which("prometheus")
    assert binary is not None
    log = (folder / "prometheus.log").open("wb")
    return subprocess.Popen(
        [binary, f"--config.file={folder / 'prometheus.yml'}",
         f"--storage.tsdb.path={folder / 'data'}", f"--web.listen-address=127.0.0.1:{port}"],
        stdout=log, stderr=subprocess.STDOUT,
    )  # fmt: skip


def _alerts(port: int) -> list[dict[str, Any]]:
    status, body = http_get(f"http://127.0.0.1:{port}/api/v1/alerts")
    assert status == 200, body
    alerts: list[dict[str, Any]] = json.loads(body)["data"]["alerts"]
    return alerts


def _start_daemon(config: Path, env: dict[str, str]) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "archiver", "run", "--config", str(config)],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip


def _stop(process: subprocess.Popen[str]) -> tuple[str, str]:
    process.send_signal(signal.SIGTERM)
    out, err = process.communicate(timeout=30)
    assert process.returncode == 0, err + out
    return out, err


def _refusal_alert(port: int) -> dict[str, Any] | None:
    return next((a for a in _alerts(port) if a["labels"]["alertname"] == ALERT), None)


def test_a_refused_password_fires_the_alert_in_a_real_prometheus(
    tmp_path: Path, s3_env: dict[str, str], seaweed: SeaweedS3, bucket: str,
    prometheus: tuple[Path, int],
) -> None:  # fmt: skip
    """Fires while the PBX refuses, and resolves once the admin fixes the password and restarts
    archiver (what the summary tells them to do)."""
    folder, prometheus_port = prometheus
    archiver_port = free_port()
    options = SimulatorOptions(username="admin", password=PASSWORD, seed=3, per_day=1)
    env = {**os.environ, **s3_env, "TEST_PBX_PASSWORD": "Not-The-Password-7"}
    env.pop("NOTIFY_SOCKET", None)
    seen: list[tuple[float, str]] = []
    firing: dict[str, Any] | None = None
    others: list[str] = []
    resolved_after_s: float | None = None
    with SimulatorThread(options) as sim:
        config = tmp_path / "archiver.toml"
        listen: dict[str, object] = {"listen": f"127.0.0.1:{archiver_port}"}
        text = daemon_toml(sim.base_url, seaweed, bucket, tmp_path, http=listen)
        config.write_text(text.replace("[pbx]\n", '[pbx]\nname = "ankara"\n'), "utf-8")
        started = time.monotonic()
        daemon = _start_daemon(config, env)
        server = _start_prometheus(folder, prometheus_port, archiver_port)
        try:
            wait_for(f"http://127.0.0.1:{archiver_port}/readyz", status=503)
            wait_for(f"http://127.0.0.1:{prometheus_port}/-/ready", timeout_s=30)
            deadline = time.monotonic() + 45
            while firing is None and time.monotonic() < deadline:
                alert = _refusal_alert(prometheus_port)
                if alert is not None:
                    if not seen or seen[-1][1] != alert["state"]:
                        seen.append((round(time.monotonic() - started, 1), alert["state"]))
                    if alert["state"] == "firing":
                        firing = alert
                time.sleep(0.5)
            others = [a["labels"]["alertname"] for a in _alerts(prometheus_port)
                      if a["labels"]["alertname"] != ALERT]  # fmt: skip
            out, err = _stop(daemon)
            assert "Not-The-Password-7" not in out + err
            # The fix: the right password, and a restart on the same address.
            fixed_at = time.monotonic()
            daemon = _start_daemon(config, {**env, "TEST_PBX_PASSWORD": PASSWORD})
            wait_for(f"http://127.0.0.1:{archiver_port}/readyz", status=200)
            deadline = time.monotonic() + 30
            while resolved_after_s is None and time.monotonic() < deadline:
                if _refusal_alert(prometheus_port) is None:
                    resolved_after_s = round(time.monotonic() - fixed_at, 1)
                time.sleep(0.5)
        finally:
            server.send_signal(signal.SIGTERM)
            server.wait(timeout=30)
            if daemon.poll() is None:
                _stop(daemon)
    print(f"{ALERT}: states seen (s since `archiver run` started): {seen}")
    print(json.dumps(firing, indent=2))
    print(f"{ALERT}: resolved {resolved_after_s} s after the restart with the right password")
    assert firing is not None, (seen, (folder / "prometheus.log").read_text("utf-8")[-3000:])
    # It was pending for its `for:` before it fired: a lasting state, not one scrape.
    assert [state for _, state in seen] == ["pending", "firing"], seen
    assert firing["labels"] == {
        "alertname": ALERT, "pbx": "ankara", "job": "archiver",
        "instance": f"127.0.0.1:{archiver_port}", "severity": "critical",
    }  # fmt: skip
    assert firing["annotations"]["summary"].startswith(
        "PBX ankara refuses archiver's username/password: fix the password file"
    )
    assert firing["value"] in ("1e+00", "1")
    assert others == []  # a refusal is not also a "no successful poll" (its own alert says it)
    assert resolved_after_s is not None, "the alert did not resolve after the fix"
