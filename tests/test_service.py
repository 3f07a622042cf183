"""The daemon under systemd's eyes: sd_notify over a real socket, /metrics, /healthz, /readyz."""

from __future__ import annotations

import asyncio
import io
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from datetime import datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from support import daemon_toml, free_port, http_get, metric_value, wait_for

from archiver.config import PbxConfig
from archiver.errors import KINDS
from archiver.lab.seaweed import SeaweedS3
from archiver.lab.simulator import SimulatorOptions, SimulatorThread, start_simulator
from archiver.notify import Notifier, watchdog_interval_s
from archiver.observe import RETRY_REASONS, retry_reason
from archiver.pbx.client import PbxClient
from archiver.pipeline.transcode import find_ffmpeg
from archiver.service.http import Health, add_metrics_routes, build_http_app, start_http
from archiver.service.metrics import Metrics
from archiver.service.progress import ProgressBar
from archiver.service.startup import Service, check_pbxs

PASSWORD = "Service-Secret-41177"


class NotifyListener:
    """A datagram socket standing in for systemd's notify socket; collects what arrives."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.messages: list[dict[str, str]] = []
        self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self._sock.bind(str(path))
        self._sock.settimeout(0.2)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._receive, daemon=True)
        self._thread.start()

    def _receive(self) -> None:
        while not self._stop.is_set():
            try:
                data = self._sock.recv(4096)
            except TimeoutError:
                continue
            fields = dict(line.split("=", 1) for line in data.decode().splitlines())
            self.messages.append(fields)

    def wait_for(self, key: str, *, timeout_s: float = 30) -> dict[str, str]:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            for message in list(self.messages):
                if key in message:
                    return message
            time.sleep(0.05)
        raise AssertionError(f"no {key} datagram; got {self.messages}")

    def count(self, key: str) -> int:
        return sum(key in message for message in list(self.messages))

    def close(self) -> None:
        self._stop.set()
        self._thread.join()
        self._sock.close()


@pytest.fixture
def listener(tmp_path: Path) -> Iterator[NotifyListener]:
    running = NotifyListener(tmp_path / "notify.sock")
    yield running
    running.close()


def test_notifier_sends_datagrams(listener: NotifyListener) -> None:
    notifier = Notifier(str(listener.path))
    assert notifier.ready("starting") and notifier.status("a\nb") and notifier.watchdog()
    assert notifier.stopping("bye")
    ready = listener.wait_for("READY")
    assert ready["READY"] == "1" and ready["STATUS"] == "starting"
    assert ready["MAINPID"] == str(os.getpid())
    assert listener.wait_for("WATCHDOG")["WATCHDOG"] == "1"
    assert {"STATUS": "a b"} in listener.messages  # a newline cannot start a second field
    assert listener.wait_for("STOPPING")["STATUS"] == "bye"


def test_notifier_outside_systemd_and_abstract_socket() -> None:
    assert not Notifier(None).ready("x")  # no $NOTIFY_SOCKET: nothing to do
    name = f"archiver-test-{os.getpid()}"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as receiver:
        receiver.bind("\0" + name)
        assert Notifier("@" + name).status("abstract")
        assert receiver.recv(100) == b"STATUS=abstract"
    # A socket nobody listens on: the daemon logs it and carries on.
    assert not Notifier("/nonexistent/notify.sock").watchdog()


def test_notifier_takes_the_socket_out_of_the_environment(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("NOTIFY_SOCKET", "/run/systemd/notify")
    notifier = Notifier.from_environment()
    assert notifier.address == "/run/systemd/notify"
    assert "NOTIFY_SOCKET" not in os.environ  # children (ffmpeg) cannot speak for the daemon


async def test_startup_check_fails_only_on_refused_credentials(tmp_path: Path) -> None:
    runner, port = await start_simulator(SimulatorOptions(username="admin", password=PASSWORD))
    url = f"http://127.0.0.1:{port}"
    dead = f"http://127.0.0.1:{free_port()}"

    def client(name: str, base: str, password: str) -> PbxClient:
        cfg = PbxConfig(name=name, url=base, username="admin", password=password)  # type: ignore[arg-type]
        return PbxClient(cfg, password)

    clients = {
        "good": client("good", url, PASSWORD),
        "wrong": client("wrong", url, "not-the-password"),
        "down": client("down", dead, PASSWORD),  # unreachable: the poll loop will retry it
    }
    try:
        assert await check_pbxs(clients) == ["wrong"]
    finally:
        for each in clients.values():
            await each.close()
        await runner.cleanup()


def test_watchdog_interval_from_environment() -> None:
    assert watchdog_interval_s({}) is None
    assert watchdog_interval_s({"WATCHDOG_USEC": "120000000"}) == 120.0
    assert watchdog_interval_s({"WATCHDOG_USEC": "0"}) is None
    mine = {"WATCHDOG_USEC": "2000000", "WATCHDOG_PID": str(os.getpid())}
    assert watchdog_interval_s(mine) == 2.0
    assert watchdog_interval_s({**mine, "WATCHDOG_PID": "1"}) is None  # for another process


async def test_watchdog_pings_only_while_the_loop_is_fresh(
    listener: NotifyListener, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("WATCHDOG_USEC", "200000")  # ping every 0.1 s
    health = Health(stale_after_s=0.5)
    service = Service(Notifier(str(listener.path)), health, Metrics(["pbx"]))
    stop = asyncio.Event()
    async with service.running(stop):
        await asyncio.sleep(0.35)
        fresh = listener.count("WATCHDOG")
        await asyncio.sleep(0.5)  # no beat: the loop is stuck, so the pings must stop
        stale_from = listener.count("WATCHDOG")
        await asyncio.sleep(0.4)
        assert listener.count("WATCHDOG") == stale_from
        health.beat()
        await asyncio.sleep(0.3)
        assert listener.count("WATCHDOG") > stale_from
        stop.set()
        await asyncio.sleep(0.05)
    assert fresh >= 2
    assert listener.wait_for("STOPPING")["STATUS"].startswith("stopping; archived today 0")
    assert listener.count("STOPPING") == 1


async def test_metrics_and_readyz_over_http() -> None:
    health = Health()
    metrics = Metrics(["a", "b"], on_event=health.beat)
    app = build_http_app(health)
    add_metrics_routes(app, metrics, ready_window_s=60)
    runner, port = await start_http(app, "127.0.0.1:0")
    base = f"http://127.0.0.1:{port}"
    try:
        status, body = await asyncio.to_thread(http_get, f"{base}/readyz")
        assert status == 503 and "a: no listing yet" in body and "b: no listing yet" in body
        metrics.listed("a", ok=True, discovered=3, due=2)
        metrics.listed("b", ok=False, discovered=0, due=0)
        status, body = await asyncio.to_thread(http_get, f"{base}/readyz")
        assert (status, body) == (503, "b: last listing failed\n")
        metrics.listed("b", ok=True, discovered=0, due=0)
        metrics.stage_done("download", "a", 0.3, ok=True)
        metrics.retrying("download", "a", retry_reason("timeout"))
        metrics.downloaded("a", 1000)
        metrics.stored("a", mp3_bytes=400, audio_s=12.5, uploaded=True)
        metrics.finished("a", "archived")
        assert await asyncio.to_thread(http_get, f"{base}/readyz") == (200, "ready\n")
        status, body = await asyncio.to_thread(http_get, f"{base}/metrics")
        assert status == 200
        assert metric_value(body, "archiver_recordings_discovered_total", pbx="a") == 3
        assert metric_value(body, "archiver_recordings_total", pbx="a", outcome="archived") == 1
        assert metric_value(body, "archiver_recordings_total", pbx="b", outcome="failed") == 0
        assert metric_value(body, "archiver_backlog_recordings", pbx="a") == 1
        assert metric_value(body, "archiver_source_bytes_total", pbx="a") == 1000
        assert metric_value(body, "archiver_uploaded_bytes_total", pbx="a") == 400
        assert metric_value(body, "archiver_audio_seconds_total", pbx="a") == 12.5
        assert metric_value(body, "archiver_transcode_audio_seconds_total", pbx="a") == 12.5
        assert metric_value(body, "archiver_retries_total", stage="download", reason="timeout")
        assert metric_value(
            body, "archiver_stage_duration_seconds_bucket", stage="download", pbx="a", le="0.5"
        ) == 1  # fmt: skip
        assert metric_value(body, "archiver_listings_total", pbx="b", result="failed") == 1
        # The adaptive request limits, read at each scrape; the ffmpegs' CPU, from the kernel.
        limits = {"a": 3.5, "b": 1.0}
        metrics.watch_request_limits(lambda: limits)
        cpu_before = metric_value(body, "archiver_transcode_cpu_seconds_total")
        subprocess.run(
            [find_ffmpeg(None), "-nostdin", "-v", "error", "-f", "lavfi", "-i",
             "sine=duration=30", "-c:a", "libmp3lame", "-f", "null", "-"],
            check=True,
        )  # fmt: skip
        limits["a"] = 2.45
        _, body = await asyncio.to_thread(http_get, f"{base}/metrics")
        assert metric_value(body, "archiver_pbx_request_limit", pbx="a") == 2.45
        assert metric_value(body, "archiver_transcode_cpu_seconds_total") > cpu_before
        # Counters another module hands over as samples (the call-result receiver's).
        samples = [("archiver_call_results_total", {"kind": "final", "status": "answered"}, 2.0)]
        metrics.add_counters(lambda: samples, "Call results received.")
        _, body = await asyncio.to_thread(http_get, f"{base}/metrics")
        assert (
            metric_value(body, "archiver_call_results_total", kind="final", status="answered") == 2
        )
        assert abs(
            metric_value(body, "archiver_last_successful_poll_timestamp_seconds", pbx="a")
            - time.time()
        ) < 60  # fmt: skip
        health.stale_after_s = 0  # a stalled loop is neither healthy nor ready
        assert (await asyncio.to_thread(http_get, f"{base}/healthz"))[0] == 503
        status, body = await asyncio.to_thread(http_get, f"{base}/readyz")
        assert status == 503 and body.startswith("main loop stalled")
    finally:
        await runner.cleanup()


def test_retry_reasons_are_a_fixed_vocabulary() -> None:
    """Every kind maps to one of the retry labels, and the labels are the same set as before
    kinds existed (when they came from matching words of the message)."""
    assert set(RETRY_REASONS) == {
        "timeout", "truncated", "html_page", "disconnected", "connect", "connection",
        "throttled", "http_5xx", "http_status", "other",
    }  # fmt: skip
    assert {retry_reason(kind) for kind in KINDS} == set(RETRY_REASONS)
    assert retry_reason("conflict") == "other"


def test_run_under_systemd(
    tmp_path: Path, s3_env: dict[str, str], seaweed: SeaweedS3, bucket: str,
    listener: NotifyListener,
) -> None:  # fmt: skip
    """`archiver run` as systemd starts it: READY after the checks, WATCHDOG pings at half of
    WatchdogSec, STATUS, metrics of real work over HTTP, STOPPING on SIGTERM, exit 0."""
    tz = ZoneInfo("Europe/Istanbul")
    yesterday = datetime.now(tz).date() - timedelta(days=1)
    options = SimulatorOptions(username="admin", password=PASSWORD, seed=11, start=yesterday,
                               days=2, per_day=3, max_duration_s=20, timezone=tz.key)  # fmt: skip
    port = free_port()
    env = {**os.environ, **s3_env, "TEST_PBX_PASSWORD": PASSWORD,
           "NOTIFY_SOCKET": str(listener.path), "WATCHDOG_USEC": "1000000"}  # fmt: skip
    with SimulatorThread(options) as sim:
        expected = sum(
            1
            for r in sim.corpus.recordings()
            if r.valid and r.started_local is not None and r.started_local.date() == yesterday
        )
        config = tmp_path / "a.toml"
        text = daemon_toml(sim.base_url, seaweed, bucket, tmp_path,
                           http={"listen": f"127.0.0.1:{port}"})  # fmt: skip
        config.write_text(text, "utf-8")
        process = subprocess.Popen(
            [sys.executable, "-m", "archiver", "run", "--config", str(config)],
            env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )  # fmt: skip
        try:
            ready = listener.wait_for("READY")
            assert ready["MAINPID"] == str(process.pid)
            assert ready["STATUS"].startswith("archived today ")
            base = f"http://127.0.0.1:{port}"
            wait_for(f"{base}/readyz")
            deadline = time.monotonic() + 60
            while True:
                body = wait_for(f"{base}/metrics")
                ended = sum(
                    metric_value(body, "archiver_recordings_total", pbx="pbx", outcome=outcome)
                    for outcome in ("archived", "empty", "already_present")
                )
                if ended >= expected:
                    break
                assert time.monotonic() < deadline, body
                time.sleep(0.3)
            archived = metric_value(body, "archiver_recordings_total", pbx="pbx",
                                    outcome="archived")  # fmt: skip
            assert archived >= 1
            assert metric_value(body, "archiver_recordings_total", pbx="pbx", outcome="failed") == 0
            assert metric_value(body, "archiver_source_bytes_total", pbx="pbx") > 0
            assert metric_value(body, "archiver_uploaded_bytes_total", pbx="pbx") > 0
            assert metric_value(body, "archiver_audio_seconds_total", pbx="pbx") > 0
            # Sizing a host: the CPU the transcoding ffmpegs took, the audio they made, and
            # the adaptive limit of requests to the PBX (at most max_concurrent_requests).
            assert metric_value(body, "archiver_transcode_cpu_seconds_total") > 0
            assert metric_value(body, "archiver_transcode_audio_seconds_total", pbx="pbx") > 0
            assert 1 <= metric_value(body, "archiver_pbx_request_limit", pbx="pbx") <= 2
            assert metric_value(body, "archiver_stage_duration_seconds_count",
                                stage="upload", pbx="pbx") >= archived  # fmt: skip
            assert metric_value(body, "archiver_recordings_discovered_total", pbx="pbx") >= expected
            time.sleep(1.2)  # at least two watchdog periods of 0.5 s
            assert listener.count("WATCHDOG") >= 2
            statuses = [m["STATUS"] for m in list(listener.messages) if "STATUS" in m]
            # STATUS follows the work: the counts it showed rise and never pass the metrics'.
            shown = [int(s.split(",")[0].removeprefix("archived today ")) for s in statuses]
            assert shown == sorted(shown) and shown[-1] >= 1, statuses
            final = metric_value(wait_for(f"{base}/metrics"), "archiver_recordings_total",
                                 pbx="pbx", outcome="archived")  # fmt: skip
            assert shown[-1] <= final
            assert "backlog " in statuses[-1] and "last poll " in statuses[-1]
        finally:
            process.send_signal(signal.SIGTERM)
            out, err = process.communicate(timeout=30)
    assert process.returncode == 0, err + out
    assert listener.wait_for("STOPPING")["STOPPING"] == "1"
    events = [line for line in out.splitlines() if '"event": "ready"' in line]
    assert len(events) == 1
    # The daemon took $NOTIFY_SOCKET out of its environment: ffmpeg cannot speak for it.
    assert PASSWORD not in out + err


def test_progress_bar_follows_the_observer_events() -> None:
    """An interactive backfill's progress bar is an Observer: each listed day adds its due
    recordings to the total, each finished recording advances it."""
    out = io.StringIO()
    bar = ProgressBar(out)
    bar.listed("a", ok=True, discovered=3, due=3)
    bar.listed("a", ok=True, discovered=0, due=2)
    bar.finished("a", "archived")
    bar.finished("a", "failed")
    bar.close()
    assert "2/5" in out.getvalue()


def test_wrong_password_at_start_shows_in_status_readyz_and_metrics(
    tmp_path: Path, s3_env: dict[str, str], seaweed: SeaweedS3, bucket: str,
    listener: NotifyListener,
) -> None:  # fmt: skip
    """Issue 12 item 1: with a refused password READY=1 went out with the status `archived
    today 0, backlog 0, no poll yet`, /readyz said nothing of it and only the log knew. The
    daemon stays up (the other PBXs archive on; restarting would hammer the PBX's login), and
    says so in the status line, /readyz and a metric; a listing accepted later clears it."""
    options = SimulatorOptions(username="admin", password=PASSWORD, seed=2, per_day=1)
    port = free_port()
    env = {**os.environ, **s3_env, "TEST_PBX_PASSWORD": "Wrong-Password-1",
           "NOTIFY_SOCKET": str(listener.path)}  # fmt: skip
    with SimulatorThread(options) as sim:
        config = tmp_path / "a.toml"
        listen: dict[str, object] = {"listen": f"127.0.0.1:{port}"}
        text = daemon_toml(sim.base_url, seaweed, bucket, tmp_path, http=listen)
        config.write_text(text.replace("[pbx]\n", '[pbx]\nname = "ankara"\n'), "utf-8")
        process = subprocess.Popen(
            [sys.executable, "-m", "archiver", "run", "--config", str(config)],
            env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )  # fmt: skip
        try:
            ready = listener.wait_for("READY")
            assert ready["STATUS"].startswith("credentials refused by PBX ankara; "), ready
            base = f"http://127.0.0.1:{port}"
            body = wait_for(f"{base}/readyz", status=503)
            assert "ankara: credentials refused" in body, body
            metrics = wait_for(f"{base}/metrics")
            assert metric_value(metrics, "archiver_pbx_credentials_refused", pbx="ankara") == 1
        finally:
            process.send_signal(signal.SIGTERM)
            out, err = process.communicate(timeout=30)
    assert process.returncode == 0, err + out
    assert "Wrong-Password-1" not in out + err


def test_an_accepted_listing_clears_the_refusal() -> None:
    metrics = Metrics(["ankara"])
    metrics.credentials_refused("ankara")
    assert metrics.not_ready(60) == ["ankara: credentials refused (fix the username/password)"]
    assert 'archiver_pbx_credentials_refused{pbx="ankara"} 1.0' in metrics.render().decode()
    metrics.listed("ankara", ok=True, discovered=0, due=0)
    assert metrics.not_ready(60) == [] and metrics.refused_pbxs() == []
    assert 'archiver_pbx_credentials_refused{pbx="ankara"} 0.0' in metrics.render().decode()
