"""The hostile-PBX phase of `scripts/chaos` (see `archiver.lab.chaos`): `archiver run` with a
hostile PBX listed first and a good one, /healthz asked every 0.25 s throughout.

The hostile PBX answers every request with one of: a body dripped one byte every 0.8 s, a 302 to
another port, or the listing followed by 60 MiB of junk lines. The daemon must archive the good
PBX exactly once, answer /healthz at every ask, and meet each hostile reply with its reason:
`slower than` (the minimum transfer rate), `redirect` (never followed), `more than 100000 lines`.
"""

from __future__ import annotations

import argparse
import signal
import subprocess
import sys
import threading
import time
import urllib.request
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

from archiver.lab.seaweed import SeaweedS3
from archiver.lab.simulator import SimulatorOptions, SimulatorThread
from archiver.lab.simulator.corpus import DEFAULT_TIMEZONE

__all__ = ["HostileAudit", "hostile_phase"]

BUCKET = "chaos-hostile"
# What the daemon's log says when it meets each hostile reply.
FAULT_REASONS = {
    "drip": "slower than",
    "redirect": "answered a redirect",
    "junk listing": "more than 100000 lines",
}
_HEALTHZ_EVERY_S = 0.25
_HEALTHZ_TIMEOUT_S = 2.0


@dataclass(frozen=True)
class HostileAudit:
    """The good PBX's audit (as the main chaos line), /healthz and the faults met."""

    expected: int
    archived: int
    lost: int
    duplicated: int
    corrupt: int
    tempfiles: int
    stale_multipart: int
    unexpected: int
    healthz_asked: int
    healthz_missed: int
    healthz_max_ms: float
    faults_seen: int

    def line(self) -> str:
        return (
            f"hostile_pbx expected {self.expected} archived {self.archived} lost {self.lost} "
            f"duplicated {self.duplicated} corrupt {self.corrupt} tempfiles {self.tempfiles} "
            f"stale_multipart {self.stale_multipart} healthz_missed {self.healthz_missed} "
            f"healthz_max_ms {self.healthz_max_ms:.0f} faults_seen {self.faults_seen}"
        )

    @property
    def ok(self) -> bool:
        return (
            not (self.lost or self.duplicated or self.corrupt or self.tempfiles)
            and not (self.stale_multipart or self.unexpected or self.healthz_missed)
            and self.healthz_asked > 0
            and self.faults_seen == len(FAULT_REASONS)
        )


class _Pinger(threading.Thread):
    """GET /healthz every 0.25 s until stopped; a non-200 or no answer within 2 s is a miss."""

    def __init__(self, url: str) -> None:
        super().__init__(daemon=True)
        self.url = url
        self.asked = self.missed = 0
        self.max_s = 0.0
        self.stop = threading.Event()

    def run(self) -> None:
        while not self.stop.wait(_HEALTHZ_EVERY_S):
            started = time.monotonic()
            try:
                # Only ever the daemon on 127.0.0.1.
                with urllib.request.urlopen(self.url, timeout=_HEALTHZ_TIMEOUT_S) as reply:  # noqa: S310
                    ok = reply.status == 200
            except OSError:
                ok = False
            self.asked += 1
            self.missed += not ok
            self.max_s = max(self.max_s, time.monotonic() - started)


def _config(hostile_url: str, good_url: str, s3: SeaweedS3, state: Path, port: int) -> str:
    pbx = 'username = "admin"\npassword_env = "CHAOS_PBX_PASSWORD"\n'
    return f"""
[[pbx]]
name = "hostile"
url = "{hostile_url}"
{pbx}
# Faster than the defaults (30 s window, 300 s deadline) so the phase sees them fire.
transfer_window_s = 5
request_deadline_s = 30

[[pbx]]
name = "good"
url = "{good_url}"
{pbx}

[poll]
interval_s = 2
lookback_days = 1
settle_s = 0

[transcode]
workers = 2

[s3]
bucket = "{BUCKET}"
prefix = "recordings"
endpoint_url = "{s3.endpoint_url}"
region = "us-east-1"
addressing_style = "path"

[state]
path = "{state / "ledger.sqlite3"}"

[retry]
attempts = 2
wait_initial_s = 0.2
wait_max_s = 1

[http]
listen = "127.0.0.1:{port}"

[daemon]
shutdown_grace_s = 5
"""


def _free_port() -> int:
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
    return port


def _say(message: str) -> None:
    print(f"chaos: {message}", file=sys.stderr, flush=True)


def hostile_phase(
    args: argparse.Namespace, s3: SeaweedS3, data: Path, env: dict[str, str]
) -> HostileAudit:
    """Run the phase (at most `args.hostile_max_s`) and return its audit."""
    from archiver.lab.chaos import PASSWORD, audit

    yesterday = datetime.now(ZoneInfo(DEFAULT_TIMEZONE)).date() - timedelta(days=1)
    good_options = SimulatorOptions(
        password=PASSWORD, seed=args.seed + 1, start=yesterday, per_day=40,
        max_duration_s=args.max_duration_s, odd_names=False,
    )  # fmt: skip
    hostile_options = SimulatorOptions(
        password=PASSWORD, seed=args.seed + 2, start=yesterday, per_day=20,
        drip_rate=0.34, redirect_rate=0.33, bloat_rate=0.33, bloat_mb=60,
    )  # fmt: skip
    state = data / "state" / "hostile"
    state.mkdir()
    s3.create_bucket(BUCKET)
    port = _free_port()
    log_path = data / "daemon-hostile.log"
    with (
        SimulatorThread(hostile_options) as hostile,
        SimulatorThread(good_options) as good,
        log_path.open("w") as log,
    ):
        valid = [rec for rec in good.corpus.recordings() if rec.valid]
        config = state / "archiver.toml"
        config.write_text(_config(hostile.base_url, good.base_url, s3, state, port), "utf-8")
        _say(f"hostile phase: {len(valid)} good recordings; daemon log {log_path}")
        pinger = _Pinger(f"http://127.0.0.1:{port}/healthz")
        daemon = subprocess.Popen(
            [sys.executable, "-m", "archiver", "run", "--config", str(config)],
            env=env, stdout=log, stderr=subprocess.STDOUT,
        )  # fmt: skip
        try:
            _wait_listening(daemon, port)
            pinger.start()
            seen = _wait_for_phase(daemon, log_path, len(valid), args.hostile_max_s)
        finally:
            pinger.stop.set()
            daemon.send_signal(signal.SIGTERM)
            try:
                daemon.wait(timeout=60)
            except subprocess.TimeoutExpired:
                daemon.kill()
                daemon.wait()
        if pinger.is_alive():
            pinger.join()
        found = audit(s3, valid, good, [state / "work"], bucket=BUCKET)
    _say(f"hostile phase: faults met: {', '.join(sorted(seen)) or 'none'}")
    return HostileAudit(
        expected=found.expected,
        archived=found.archived,
        lost=found.lost,
        duplicated=found.duplicated,
        corrupt=found.corrupt,
        tempfiles=found.tempfiles,
        stale_multipart=found.stale_multipart,
        unexpected=found.unexpected + found.hostile_requested,
        healthz_asked=pinger.asked,
        healthz_missed=pinger.missed,
        healthz_max_ms=pinger.max_s * 1000,
        faults_seen=len(seen),
    )


def _wait_listening(daemon: subprocess.Popen[bytes], port: int, timeout_s: float = 120) -> None:
    """Return once the daemon serves /healthz (it starts serving after its start-up checks)."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline and daemon.poll() is None:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=2):
                return
        except OSError:
            time.sleep(0.2)
    raise RuntimeError(f"the daemon never served /healthz (exit {daemon.poll()})")


def _wait_for_phase(
    daemon: subprocess.Popen[bytes], log_path: Path, expected: int, max_s: float
) -> set[str]:
    """Until the good PBX's recordings are archived and every fault was met (or `max_s`):
    return the faults met."""
    deadline = time.monotonic() + max_s
    seen: set[str] = set()
    while time.monotonic() < deadline and daemon.poll() is None:
        text = log_path.read_text(encoding="utf-8", errors="replace")
        seen = {fault for fault, reason in FAULT_REASONS.items() if reason in text}
        archived = text.count('"event": "archived"')
        if archived >= expected and len(seen) == len(FAULT_REASONS):
            break
        time.sleep(0.5)
    return seen
