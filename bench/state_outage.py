"""The state outage of issue 22, measured: `archiver run` on a PostgreSQL state, archiving; the
database stopped for 75 s (`pg_ctl stop`, then started again); /healthz asked every second
throughout (each probe may wait 30 s, so a stall shows as its length, not as a bare timeout),
/readyz every 5 s, one call-result callback 20 s into the outage; the watchdog's datagrams
(WATCHDOG_USEC = 10 s, so a ping every 5 s) counted on a notify socket of our own.

    .venv/bin/python bench/state_outage.py [--outage-s 75] [--per-day 300]

Prints the probes' worst and median answer times during the outage, how many took over 1 s,
what /readyz said, the callback's status and time, the longest gap between watchdog pings, how
long after the restart archiving went on, and the ledger at the end (failed must be 0).
Everything binds to 127.0.0.1; every process it starts, it stops.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from datetime import datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

from archiver.config import load_config
from archiver.lab.postgres import LocalPostgres
from archiver.lab.seaweed import SeaweedS3
from archiver.lab.simulator import SimulatorOptions, SimulatorThread
from archiver.state import open_state

PASSWORD = "outage-Pw-1"  # noqa: S105 - the simulated PBX's
TOKEN = "o" * 24
BUCKET = "outage"
TZ = "Europe/Istanbul"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _get(url: str, timeout_s: float = 30.0) -> tuple[int, str, float]:
    started = time.monotonic()
    try:
        with urllib.request.urlopen(url, timeout=timeout_s) as response:  # noqa: S310 - local
            return response.status, response.read().decode(), time.monotonic() - started
    except urllib.error.HTTPError as error:
        return error.code, error.read().decode(), time.monotonic() - started
    except OSError as error:
        return 0, f"{type(error).__name__}: {error}", time.monotonic() - started


class Watchdog(threading.Thread):
    """A notify socket: records when each WATCHDOG=1 came."""

    def __init__(self, path: Path) -> None:
        super().__init__(daemon=True)
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(str(path))
        self.sock.settimeout(0.5)
        self.pings: list[float] = []
        self.stop = threading.Event()

    def run(self) -> None:
        while not self.stop.is_set():
            try:
                data = self.sock.recv(4096)
            except TimeoutError:
                continue
            if b"WATCHDOG=1" in data:
                self.pings.append(time.monotonic())


def _archived(log_path: Path) -> int:
    return log_path.read_text(errors="replace").count('"event": "archived"')


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--outage-s", type=float, default=75.0)
    parser.add_argument("--per-day", type=int, default=300)
    args = parser.parse_args()
    data = Path(tempfile.mkdtemp(prefix="outage-"))
    yesterday = datetime.now(ZoneInfo(TZ)).date() - timedelta(days=1)
    options = SimulatorOptions(
        username="admin", password=PASSWORD, seed=7, start=yesterday, days=1,
        per_day=args.per_day, max_duration_s=120, odd_names=False, timezone=TZ, delay_ms=5,
    )  # fmt: skip
    http_port = _free_port()
    with (
        SimulatorThread(options) as sim,
        SeaweedS3(data_dir=data / "s3") as s3,
        LocalPostgres() as pg,
    ):
        s3.create_bucket(BUCKET)
        url = pg.create_database("archiver")
        config = data / "archiver.toml"
        config.write_text(
            f"""
[pbx]
url = "{sim.base_url}"
username = "admin"
password_env = "OUTAGE_PBX_PASSWORD"
timezone = "{TZ}"

[poll]
interval_s = 5
lookback_days = 1
settle_s = 0

[transcode]
workers = 2

[s3]
bucket = "{BUCKET}"
endpoint_url = "{s3.endpoint_url}"
region = "us-east-1"
addressing_style = "path"

[state]
url = "{url}"
work_dir = "{data / "work"}"
outage_s = 60

[http]
listen = "127.0.0.1:{http_port}"

[callbacks]
enabled = true
token = "{TOKEN}"
""",
            "utf-8",
        )
        notify = data / "notify.sock"
        watchdog = Watchdog(notify)
        watchdog.start()
        env = {
            **{k: v for k, v in os.environ.items() if not k.startswith("AWS_")},
            "OUTAGE_PBX_PASSWORD": PASSWORD,
            "AWS_ACCESS_KEY_ID": s3.access_key,
            "AWS_SECRET_ACCESS_KEY": s3.secret_key,
            "AWS_CONFIG_FILE": "/nonexistent",
            "AWS_SHARED_CREDENTIALS_FILE": "/nonexistent",
            "AWS_EC2_METADATA_DISABLED": "true",
            "NOTIFY_SOCKET": str(notify),
            "WATCHDOG_USEC": "10000000",
        }
        log_path = data / "daemon.log"
        base = f"http://127.0.0.1:{http_port}"
        with log_path.open("w") as log:
            daemon = subprocess.Popen(
                [sys.executable, "-m", "archiver", "run", "--config", str(config)],
                env=env, stdout=log, stderr=subprocess.STDOUT,
            )  # fmt: skip
            try:
                return _scenario(args, daemon, pg, base, log_path, watchdog, config)
            finally:
                if daemon.poll() is None:
                    daemon.send_signal(signal.SIGTERM)
                    try:
                        daemon.wait(60)
                    except subprocess.TimeoutExpired:
                        daemon.kill()
                watchdog.stop.set()
                print(f"daemon exit code {daemon.returncode}; log {log_path}")


def _scenario(
    args: argparse.Namespace,
    daemon: subprocess.Popen[bytes],
    pg: LocalPostgres,
    base: str,
    log_path: Path,
    watchdog: Watchdog,
    config: Path,
) -> int:
    deadline = time.monotonic() + 120
    while _archived(log_path) < 10:
        if time.monotonic() > deadline or daemon.poll() is not None:
            print("the daemon did not start archiving", file=sys.stderr)
            return 1
        time.sleep(0.5)
    print(f"load average before: {os.getloadavg()}")
    before = _archived(log_path)
    stopped_at = time.monotonic()
    pg.stop()
    print(f"PostgreSQL stopped with {before} archived")
    probes: list[float] = []
    statuses: list[int] = []
    readyz: list[tuple[float, int, str]] = []
    callback: tuple[int, str, float] | None = None
    callback_sent_at = 0.0
    tick = 0
    while time.monotonic() - stopped_at < args.outage_s:
        next_tick = stopped_at + tick + 1
        status, _, took = _get(f"{base}/healthz")
        probes.append(took)
        statuses.append(status)
        if tick % 5 == 0:
            code, text, _ = _get(f"{base}/readyz")
            readyz.append((time.monotonic() - stopped_at, code, text.strip().splitlines()[0]))
        if tick == 20:
            callback_sent_at = time.time()
            query = "sonuc=ANSWER&telefon=903123320404&son=1"
            callback = _get(f"{base}/pbx/call-result/{TOKEN}?{query}")
        tick += 1
        time.sleep(max(0.0, next_tick - time.monotonic()))
    during = _archived(log_path)
    pg.start()
    started_at = time.monotonic()
    print(f"PostgreSQL started after {started_at - stopped_at:.1f} s")
    resumed_s = None
    after_probes: list[float] = []
    while time.monotonic() - started_at < 60:
        after_probes.append(_get(f"{base}/healthz")[2])
        if resumed_s is None and _archived(log_path) > during:
            resumed_s = time.monotonic() - started_at
        time.sleep(1)
    code, text, _ = _get(f"{base}/readyz")
    cfg = load_config(config)
    state = open_state(cfg)
    try:
        counts = state.ledger.counts()
        events = state.calls.events()
    finally:
        state.close()
    gaps = [b - a for a, b in zip(watchdog.pings, watchdog.pings[1:], strict=False)]
    in_outage = [p for p in watchdog.pings if stopped_at <= p <= started_at]
    result = {
        "load_average": os.getloadavg(),
        "outage_s": round(started_at - stopped_at, 1),
        "healthz_probes": len(probes),
        "healthz_not_200": sum(1 for s in statuses if s != 200),
        "healthz_over_1s": sum(1 for p in probes if p > 1.0),
        "healthz_max_ms": round(1000 * max(probes), 1),
        "healthz_median_ms": round(1000 * statistics.median(probes), 1),
        "healthz_after_max_ms": round(1000 * max(after_probes), 1),
        "readyz_during": readyz,
        "readyz_after": (code, text.strip()),
        "callback": callback,
        "callback_stored": [
            (e.status, e.ended, round(e.received_at - callback_sent_at, 2)) for e in events
        ],
        "watchdog_pings_in_outage": len(in_outage),
        "watchdog_max_gap_s": round(max(gaps), 1) if gaps else None,
        "archived_before_stop": before,
        "archived_during_outage": during - before,
        "archiving_resumed_after_start_s": None if resumed_s is None else round(resumed_s, 1),
        "ledger_at_end": counts,
    }
    print(json.dumps(result, indent=1, default=str))
    ok = (
        result["healthz_over_1s"] == 0
        and result["healthz_not_200"] == 0
        and callback is not None
        and callback[2] < 1.0
        and len(events) == 1
        and counts.get("failed", 0) == 0
    )
    print("OK" if ok else "NOT OK")
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
