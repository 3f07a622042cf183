"""`archiver web` against slow and greedy connections, its transport headers, and its life under
systemd (issue 19: items 4, 11, 16 and gzip): each over real sockets against a real server."""

from __future__ import annotations

import gzip
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from support import free_port, wait_for
from test_web_attacks import Peer, Zipper, _csrf
from web_support import (
    USERS,
    Site,
    WebThread,
    archive_day,
    s3_environment,
    serving,
    web_table,
)

from archiver.config import Config
from archiver.lab.seaweed import SeaweedS3

UNIT = Path(__file__).resolve().parent.parent / "systemd" / "archiver-web.service"


@pytest.fixture(scope="module")
def archived(seaweed: SeaweedS3, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Config]:
    tmp = tmp_path_factory.mktemp("web-transport")
    with s3_environment(seaweed):
        yield archive_day(seaweed, tmp, web_table(tmp))


@pytest.fixture(scope="module")
def tight(archived: Config, seaweed: SeaweedS3) -> Iterator[Site]:
    """A server with short read deadlines and small connection caps."""
    web = archived.web.model_copy(update={
        "header_timeout_s": 2.0, "body_timeout_s": 2.0,
        "max_connections": 40, "max_connections_per_address": 10,
    })  # fmt: skip
    with s3_environment(seaweed), serving(archived.model_copy(update={"web": web})) as site:
        yield site


def _connect(site: Site, source: str) -> socket.socket:
    port = int(site.url.rsplit(":", 1)[1])
    return socket.create_connection(("127.0.0.1", port), timeout=10, source_address=(source, 0))


def _closed_within(sock: socket.socket, seconds: float) -> float | None:
    """Seconds until the server closed `sock` (reading and dropping what it sent), or None."""
    started = time.monotonic()
    sock.settimeout(0.2)
    while time.monotonic() - started < seconds:
        try:
            if sock.recv(4096) == b"":
                return time.monotonic() - started
        except TimeoutError:
            continue
        except ConnectionResetError:
            return time.monotonic() - started
    return None


# --- 4. Slowloris ------------------------------------------------------------------------------


def test_a_silent_connection_is_closed_after_the_header_deadline(tight: Site) -> None:
    with _connect(tight, "127.0.0.120") as sock:
        closed = _closed_within(sock, 8)
    assert closed is not None and closed < 4.5, closed


def test_headers_sent_a_line_at_a_time_are_cut_off(tight: Site) -> None:
    with _connect(tight, "127.0.0.121") as sock:
        sock.sendall(b"GET /login HTTP/1.1\r\nHost: x\r\n")
        started = time.monotonic()
        cut = False
        while time.monotonic() - started < 10:
            time.sleep(0.5)
            try:
                sock.sendall(b"X-Drip: 1\r\n")
            except (BrokenPipeError, ConnectionResetError):
                cut = True
                break
            if _closed_within(sock, 0.01) is not None:
                cut = True
                break
        assert cut and time.monotonic() - started < 5


def test_a_body_sent_too_slowly_gets_408(tight: Site) -> None:
    with _connect(tight, "127.0.0.122") as sock:
        sock.sendall(b"POST /login HTTP/1.1\r\nHost: x\r\nContent-Type: application/x-www-form-"
                     b"urlencoded\r\nContent-Length: 100\r\n\r\nusername=a")  # fmt: skip
        sock.settimeout(10)
        started = time.monotonic()
        answer = sock.recv(4096)
    assert answer.startswith(b"HTTP/1.1 408"), answer[:80]
    assert time.monotonic() - started < 5


def test_connections_are_capped_per_address_and_in_total(tight: Site) -> None:
    held: list[socket.socket] = []
    try:
        held += [_connect(tight, "127.0.0.123") for _ in range(10)]
        time.sleep(0.2)
        with _connect(tight, "127.0.0.123") as extra:
            extra.settimeout(5)
            assert extra.recv(4096).startswith(b"HTTP/1.1 503 Service Unavailable\r\nRetry-After:")
        # Another address is still served at once.
        assert Peer(tight, "127.0.0.124").request("GET", "/login")[0] == 200
        # Fill the total (40) from other addresses: then everyone gets the 503 until some close.
        for n in range(3):
            held += [_connect(tight, f"127.0.0.{125 + n}") for _ in range(10)]
        time.sleep(0.2)
        status, headers, _ = Peer(tight, "127.0.0.129").request("GET", "/login")
        assert status == 503 and headers["Retry-After"] == "5"
    finally:
        for sock in held:
            sock.close()
    time.sleep(0.3)
    assert Peer(tight, "127.0.0.129").request("GET", "/login")[0] == 200


# --- gzip (issue 18's item 11, in app.py) ------------------------------------------------------


def test_pages_and_the_api_are_gzipped_audio_is_not(tight: Site) -> None:
    peer = Peer(tight, "127.0.0.130")
    assert peer.login("ayse", USERS["ayse"]) == 303
    status, headers, body = peer.request("GET", "/", headers={"Accept-Encoding": "gzip"})
    assert status == 200 and headers.get("Content-Encoding") == "gzip"
    assert b'name="number"' in gzip.decompress(body)
    status, headers, body = peer.request("GET", "/api/recordings",
                                         headers={"Accept-Encoding": "gzip"})  # fmt: skip
    assert status == 200 and headers.get("Content-Encoding") == "gzip"
    assert b'"items"' in gzip.decompress(body)
    key = tight.entries()[0].object_key
    status, headers, _ = peer.request("GET", "/audio/" + key, headers={"Accept-Encoding": "gzip"})
    assert status == 200 and "Content-Encoding" not in headers
    # Without Accept-Encoding: plain.
    status, headers, body = peer.request("GET", "/")
    assert "Content-Encoding" not in headers and b'name="number"' in body


def test_no_hsts_over_plain_http(tight: Site) -> None:
    _, headers, _ = Peer(tight, "127.0.0.131").request("GET", "/login")
    assert "Strict-Transport-Security" not in headers


# --- 16. Watchdog, and SIGTERM within 5 s -------------------------------------------------------


class NotifySocket:
    """systemd's side of sd_notify: a datagram socket that collects what is sent to it."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(str(path))
        self.sock.settimeout(0.2)
        self.messages: list[str] = []

    def collect(self, seconds: float) -> list[str]:
        until = time.monotonic() + seconds
        while time.monotonic() < until:
            try:
                self.messages.append(self.sock.recv(4096).decode())
            except TimeoutError:
                continue
        return self.messages


def _web_toml(cfg: Config, port: int) -> str:
    pbx = cfg.pbx[0]
    return (
        f'[pbx]\nurl = "{pbx.url}"\nusername = "admin"\npassword_env = "UNUSED_PBX_PASSWORD"\n'
        f'[s3]\nbucket = "{cfg.s3.bucket}"\nendpoint_url = "{cfg.s3.endpoint_url}"\n'
        f'[state]\npath = "{cfg.state.path}"\n'
        f'[web]\nusers_file = "{cfg.web.users_file}"\nlisten = "127.0.0.1:{port}"\n'
        'timezone = "Europe/Istanbul"\n'
    )


def test_archiver_web_notifies_systemd_and_stops_within_5_s_under_load(
    archived: Config, seaweed: SeaweedS3, tmp_path: Path
) -> None:
    port = free_port()
    config = tmp_path / "archiver.toml"
    config.write_text(_web_toml(archived, port), encoding="utf-8")
    notify = NotifySocket(tmp_path / "notify")
    env: dict[str, Any] = {**os.environ, **seaweed.aws_env(), "NOTIFY_SOCKET": str(notify.path),
                           "WATCHDOG_USEC": "1000000"}  # fmt: skip
    env.pop("AWS_ENDPOINT_URL_S3")
    env.pop("WATCHDOG_PID", None)
    log = (tmp_path / "web.log").open("w")
    process = subprocess.Popen([sys.executable, "-m", "archiver", "web", "--config", str(config)],
                               env=env, stdout=log, stderr=subprocess.STDOUT)  # fmt: skip
    try:
        wait_for(f"http://127.0.0.1:{port}/login")
        messages = notify.collect(2.5)
        assert any("READY=1" in m for m in messages), messages
        assert sum("WATCHDOG=1" in m for m in messages) >= 3, messages  # every 0.5 s
        # Busy: zips streaming to clients that do not read, and a login in progress.
        site = Site(cfg=archived, url=f"http://127.0.0.1:{port}", server=WebThread(archived))
        peer = Peer(site, "127.0.0.140")
        assert peer.login("ayse", USERS["ayse"]) == 303
        keys = [e.object_key for e in site.entries()]
        zips = [Zipper(peer, keys, _csrf(peer)) for _ in range(2)]
        started = time.monotonic()
        process.send_signal(signal.SIGTERM)
        code = process.wait(timeout=30)
        stopped_s = time.monotonic() - started
        for zipper in zips:
            zipper.conn.close()
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    assert code == 0, (tmp_path / "web.log").read_text()[-2000:]
    assert stopped_s < 5, stopped_s
    assert any("STOPPING=1" in m for m in notify.collect(0.5))


def test_the_unit_has_a_watchdog_and_descriptors_for_its_connections() -> None:
    from archiver.config import WebConfig
    from archiver.web.connections import descriptors_needed

    lines = [line.strip() for line in UNIT.read_text().splitlines()]
    assert "Type=notify" in lines
    watchdog = next(line for line in lines if line.startswith("WatchdogSec="))
    assert 10 <= int(watchdog.removeprefix("WatchdogSec=").removesuffix("s")) <= 120
    nofile = next(line for line in lines if line.startswith("LimitNOFILE="))
    assert int(nofile.removeprefix("LimitNOFILE=")) >= descriptors_needed(
        WebConfig().max_connections
    )
