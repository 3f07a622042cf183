"""Issue 11: a hostile or broken PBX, a hostile network, a careless config. Each test here
reproduced its fault on the code before the fix (real HTTP, real files)."""

from __future__ import annotations

import asyncio
import contextlib
import os
import subprocess
import sys
import threading
import time
from collections.abc import AsyncIterator
from datetime import date
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import aiohttp
import pytest
from aiohttp import web
from structlog.testing import capture_logs
from support import daemon_toml, http_get, run_archiver

from archiver.calls.callbacks import CALLBACK_STATS_KEY, add_callback_routes, classify_status
from archiver.config import CallbacksConfig, Config, PbxConfig, S3Config, parse_config
from archiver.lab.seaweed import SeaweedS3
from archiver.lab.simulator import SimulatorOptions, SimulatorThread, audio, start_simulator
from archiver.lab.simulator.server import CORPUS_KEY
from archiver.names import RECORDING_ROOT, parse_path
from archiver.pbx.client import PbxClient, PbxError, max_download_bytes
from archiver.pbx.listing import MAX_LINE_BYTES, LineCollector, ListingRefused
from archiver.pipeline import Archiver
from archiver.pipeline.invalid_names import InvalidNameLog
from archiver.pipeline.listing import parse_listing
from archiver.pipeline.transcode import Engine, TranscodeError, find_ffmpeg, transcode_to_mp3
from archiver.s3.store import S3Store
from archiver.service.http import Health, build_http_app, start_http
from archiver.state import state_threads
from archiver.state.calls import CallLog
from archiver.state.ledger import Ledger

TOKEN = "cb-token-0123456789abcdef"
GOOD_QUERY = "?sonuc=ANSWER&telefon=903123320404&son=1"


async def _callback_server(
    tmp_path: Path, **settings: Any
) -> AsyncIterator[tuple[str, CallLog, web.Application]]:
    cfg = CallbacksConfig(enabled=True, token=TOKEN, **settings)  # type: ignore[arg-type]
    calls = CallLog.open(tmp_path / "ledger.sqlite3")
    app = build_http_app(Health())
    add_callback_routes(app, cfg, calls, state_threads(calls.db))
    runner, port = await start_http(app, "127.0.0.1:0")
    try:
        yield f"http://127.0.0.1:{port}/pbx/call-result", calls, app
    finally:
        await runner.cleanup()
        calls.close()


def _pbx_config(port: int, **settings: Any) -> PbxConfig:
    return PbxConfig(url=f"http://127.0.0.1:{port}", username="admin", password="pw", **settings)  # type: ignore[arg-type]


async def _get_from(source: str, url: str) -> int:
    """GET `url` from the loopback address `source` (all of 127/8 is this machine)."""
    connector = aiohttp.TCPConnector(local_addr=(source, 0))
    async with (
        aiohttp.ClientSession(connector=connector) as session,
        session.get(url) as response,
    ):
        return response.status


# -- item 2: wrong tokens must not lock out the PBX ------------------------------------------------


async def test_wrong_tokens_from_many_addresses_do_not_lock_out_the_pbx(tmp_path: Path) -> None:
    async for url, calls, _ in _callback_server(tmp_path, global_burst=10, global_rate_per_s=0.01):
        for n in range(20):
            status = await _get_from(f"127.0.0.{n + 2}", f"{url}/wrong-token-000000000{GOOD_QUERY}")
            assert status == 403
        assert await _get_from("127.0.0.1", f"{url}/{TOKEN}{GOOD_QUERY}") == 200
        assert [event.status for event in calls.events()] == ["ANSWER"]


async def test_allowed_sources_refuse_other_addresses(tmp_path: Path) -> None:
    async for url, calls, _ in _callback_server(tmp_path, allowed_sources=["127.0.0.1"]):
        assert await _get_from("127.0.0.7", f"{url}/{TOKEN}{GOOD_QUERY}") == 403
        assert await _get_from("127.0.0.1", f"{url}/{TOKEN}{GOOD_QUERY}") == 200
        assert len(calls.events()) == 1


def test_allowed_sources_must_be_addresses() -> None:
    with pytest.raises(ValueError, match="not an IP address"):
        CallbacksConfig(allowed_sources=["pbx.example.com"])


# -- item 10: repr, look-alikes, refusal logs ------------------------------------------------------


async def test_the_receiver_repr_holds_no_token(tmp_path: Path) -> None:
    async for _, _, app in _callback_server(tmp_path):
        handlers = [route.handler for route in app.router.routes()]
        receivers = [getattr(handler, "__self__", None) for handler in handlers]
        shown = [repr(receiver) for receiver in receivers if receiver is not None]
        assert shown
        assert not [text for text in shown if TOKEN in text]


@pytest.mark.parametrize("raw", ["bu\u017fy", "\u0430nswer", "FA\u0130LED", "busy\u200b"])
def test_look_alike_letters_are_not_final_statuses(raw: str) -> None:
    status, kind = classify_status(raw)
    assert kind == "unknown"
    assert status.isascii()


async def test_wrong_token_refusals_are_counted_but_rarely_logged(tmp_path: Path) -> None:
    async for url, _, app in _callback_server(tmp_path, per_source_burst=1000):
        with capture_logs() as logs:
            async with aiohttp.ClientSession() as session:
                for _ in range(50):
                    async with session.get(f"{url}/wrong-token-000000000{GOOD_QUERY}") as reply:
                        assert reply.status == 403
        refused = [entry for entry in logs if entry["event"] == "call_result_refused"]
        assert len(refused) == 1
        assert app[CALLBACK_STATS_KEY].refused[(403, "bad_token")] == 50


# -- item 7: redirects are never followed ----------------------------------------------------------


async def test_a_redirect_from_the_pbx_is_an_error_and_never_followed() -> None:
    """The PBX answers 302 to another port, which serves a plausible listing: the client must
    neither ask it nor use its body."""
    asked: list[str] = []

    async def elsewhere(request: web.Request) -> web.Response:
        asked.append(request.path)
        return web.Response(
            text=f"{RECORDING_ROOT}trunk-1/20161118-110332-100-200-1479456211.1-9.wav\n"
        )

    other = web.Application()
    other.router.add_get("/{tail:.*}", elsewhere)
    other_runner = web.AppRunner(other)
    await other_runner.setup()
    site = web.TCPSite(other_runner, "127.0.0.1", 0)
    await site.start()
    target = f"http://127.0.0.1:{other_runner.addresses[0][1]}/cgi-bin/system_cmd.cgi"
    options = SimulatorOptions(password="pw", redirect_rate=1.0, redirect_to=target)
    runner, port = await start_simulator(options)
    client = PbxClient(_pbx_config(port), "pw")
    try:
        with pytest.raises(PbxError, match=r"redirect \(HTTP 302\).*never followed") as caught:
            await client.find("20161118-")
        assert not caught.value.transient
        assert asked == []
    finally:
        await client.close()
        await runner.cleanup()
        await other_runner.cleanup()


# -- item 10: bad names are still logged after 100,000 ---------------------------------------------


def test_bad_names_are_logged_after_100000_others_bounded_per_listing() -> None:
    names = InvalidNameLog()
    with capture_logs() as logs:
        for listing in range(101):
            names.log("pbx", [(f"junk-{listing}-{n}", "no") for n in range(1000)])
        names.log("pbx", [("/new/bad/line", "no")])
    logged = [entry for entry in logs if entry["event"] == "invalid_name"]
    assert logged[-1]["line"] == "'/new/bad/line'"  # the old code went silent at 100,000
    assert len(logged) == 101 * 50 + 1  # at most 50 new per listing...
    left = [entry["count"] for entry in logs if entry["event"] == "invalid_names_not_logged"]
    assert left == [950] * 101  # ...and the rest summed up, not dropped silently
    assert len(names._seen) <= names.remember


# -- items 1 and 3: a hostile listing, a slow PBX --------------------------------------------------

DAY = date(2016, 11, 18)
IST = ZoneInfo("Europe/Istanbul")


def _archiver(cfg: Config, passwords: dict[str, str]) -> Archiver:
    return Archiver(
        cfg=cfg,
        ledger=Ledger.open(cfg.state.path),
        store=S3Store(cfg.s3),
        clients={pbx.name: PbxClient(pbx, passwords[pbx.name]) for pbx in cfg.pbx},
        ffmpeg=find_ffmpeg(None),
    )


async def _close(archiver: Archiver) -> None:
    for client in archiver.clients.values():
        await client.close()
    archiver.close()
    archiver.ledger.close()


def _two_pbx_config(tmp_path: Path, s3_config: S3Config, ports: dict[str, int]) -> Config:
    pbxs = [
        {"name": name, "url": f"http://127.0.0.1:{port}", "username": "admin", "password": "pw"}
        for name, port in ports.items()
    ]
    document = {
        "pbx": pbxs,
        "s3": s3_config.model_dump(exclude_none=True),
        "poll": {"settle_s": 0},
        "transcode": {"workers": 2},
        "state": {"path": str(tmp_path / "state" / "ledger.sqlite3")},
        "retry": {"attempts": 1, "wait_initial_s": 0, "wait_max_s": 0},
    }
    return parse_config(document, "test")


class _Pinger(threading.Thread):
    """GETs /healthz every 50 ms from another thread, noting each answer's latency (a refused
    or timed-out request counts as 10 s)."""

    def __init__(self, url: str) -> None:
        super().__init__(daemon=True)
        self.url = url
        self.latencies_s: list[float] = []
        self.done = threading.Event()

    def run(self) -> None:
        while not self.done.is_set():
            started = time.monotonic()
            try:
                status, _ = http_get(self.url, timeout_s=3)
                took_s = time.monotonic() - started if status == 200 else 10.0
            except OSError:
                took_s = 10.0
            self.latencies_s.append(took_s)
            time.sleep(0.05)


async def test_a_hostile_listing_is_refused_early_and_healthz_keeps_answering(
    tmp_path: Path, s3_config: S3Config, s3_env: dict[str, str]
) -> None:
    """8 MiB of two-byte junk lines after the listing: refused at the line cap, parsed (what
    there is) off the loop, /healthz answering in well under a second throughout."""
    options = SimulatorOptions(password="pw", start=DAY, per_day=5, bloat_rate=1.0, bloat_mb=8)
    sim, port = await start_simulator(options)
    cfg = _two_pbx_config(tmp_path, s3_config, {"pbx": port})
    app = build_http_app(Health())
    http, http_port = await start_http(app, "127.0.0.1:0")
    pinger = _Pinger(f"http://127.0.0.1:{http_port}/healthz")
    archiver = _archiver(cfg, {"pbx": "pw"})
    try:
        pinger.start()
        await asyncio.sleep(0.3)
        report = await archiver.archive_days({"pbx": [DAY]})
        await asyncio.sleep(0.3)
    finally:
        pinger.done.set()
        await _close(archiver)
        await http.cleanup()
        await sim.cleanup()
    pinger.join()
    assert report.listing_errors, "a listing with 2.8 million junk lines must not be taken"
    assert "more than 100000 lines" in report.listing_errors[0]
    assert len(pinger.latencies_s) >= 5
    assert max(pinger.latencies_s) < 1.0, pinger.latencies_s


async def test_one_slow_pbx_does_not_hold_up_another(
    tmp_path: Path, s3_config: S3Config, s3_env: dict[str, str]
) -> None:
    """The slow PBX drips every reply one byte per 0.8 s and comes first in the config; the
    other one's recordings are archived meanwhile, in seconds."""
    slow_options = SimulatorOptions(password="pw", start=DAY, per_day=5, drip_rate=1.0)
    good_options = SimulatorOptions(password="pw", start=DAY, per_day=3, seed=7, max_duration_s=5)
    slow, slow_port = await start_simulator(slow_options)
    good, good_port = await start_simulator(good_options)
    cfg = _two_pbx_config(tmp_path, s3_config, {"slow": slow_port, "good": good_port})
    valid = [r for r in good.app[CORPUS_KEY].recordings() if r.valid]
    archiver = _archiver(cfg, {"slow": "pw", "good": "pw"})
    poll = asyncio.create_task(archiver.archive_days({"slow": [DAY], "good": [DAY]}))
    try:
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            counts = archiver.ledger.counts()
            if counts.get("verified", 0) == len(valid):
                break
            await asyncio.sleep(0.2)
        assert archiver.ledger.counts().get("verified", 0) == len(valid)
        assert not poll.done()  # the slow PBX is still dripping its listing
    finally:
        poll.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await poll
        await _close(archiver)
        await slow.cleanup()
        await good.cleanup()


@pytest.mark.parametrize(
    ("settings", "reason"),
    [
        ({"transfer_window_s": 1.0}, r"slower than 1024 B/s \(\d B in 1 s\)"),
        (
            {"request_deadline_s": 1.5, "min_transfer_bytes_per_s": 0.1},
            r"no complete answer within 1.5 s",
        ),
    ],
)
async def test_a_dripping_reply_is_cut_off(settings: dict[str, float], reason: str) -> None:
    options = SimulatorOptions(password="pw", start=DAY, per_day=2, drip_rate=1.0, drip_ms=200)
    runner, port = await start_simulator(options)
    client = PbxClient(_pbx_config(port, **settings), "pw")
    started = time.monotonic()
    try:
        with pytest.raises(PbxError, match=reason) as caught:
            await client.find("20161118-")
        assert caught.value.transient
        assert time.monotonic() - started < 3
    finally:
        await client.close()
        await runner.cleanup()


def test_listing_lines_are_capped_in_count_and_length() -> None:
    collector = LineCollector(max_lines=10)
    collector.feed(b"x" * 5_000_000 + b"\nshort\n")  # one 5 MB line keeps only its start
    listing = collector.finish()
    assert [len(line) for line in listing.lines] == [MAX_LINE_BYTES + 1, 5]
    with pytest.raises(ListingRefused, match="more than 10 lines"):
        LineCollector(max_lines=10).feed(b"ab\n" * 200)
    with pytest.raises(ListingRefused, match="larger than 100 bytes"):
        LineCollector(max_bytes=100).feed(b"a" * 101)


# -- item 8: cleartext and contradictory TLS settings ----------------------------------------------


def test_an_http_pbx_on_another_host_warns_at_every_start_loopback_stays_quiet() -> None:
    with capture_logs() as logs:
        for url in ("http://127.0.0.1:9999", "http://[::1]:9999", "http://localhost:9999"):
            PbxClient(PbxConfig(url=url, username="admin", password="pw"), "pw")  # type: ignore[arg-type]
    assert [entry for entry in logs if entry["event"] == "pbx_password_in_cleartext"] == []
    for url in ("http://192.0.2.10:9999", "http://pbx.example.com:9999"):
        with capture_logs() as logs:
            PbxClient(PbxConfig(url=url, username="admin", password="pw"), "pw")  # type: ignore[arg-type]
        assert [entry["event"] for entry in logs] == ["pbx_password_in_cleartext"]


@pytest.mark.parametrize(
    ("settings", "reason"),
    [
        (
            {"url": "http://192.0.2.10:9999", "ca_file": "/etc/ssl/pbx.pem"},
            "ca_file apply to https only",
        ),
        (
            {"url": "http://192.0.2.10:9999", "tls_fingerprint": "ab" * 32},
            "tls_fingerprint apply to https only",
        ),
        (
            {"url": "https://192.0.2.10:9999", "verify_tls": False, "ca_file": "/etc/ssl/pbx.pem"},
            "verify_tls = false ignores ca_file",
        ),
    ],
)
def test_check_config_refuses_contradictory_tls_settings(
    tmp_path: Path, settings: dict[str, object], reason: str
) -> None:
    lines = [f"{key} = {_toml(value)}" for key, value in settings.items()]
    config = tmp_path / "archiver.toml"
    config.write_text(
        "[pbx]\nusername = 'admin'\npassword_env = 'X'\n" + "\n".join(lines) + "\n"
        "[s3]\nbucket = 'bucket'\n",
        encoding="utf-8",
    )
    result = run_archiver("check-config", "--config", str(config), env=dict(os.environ))
    assert result.returncode == 1
    assert reason in result.stderr


def test_check_config_warns_about_a_cleartext_password(tmp_path: Path) -> None:
    config = tmp_path / "archiver.toml"
    config.write_text(
        "[pbx]\nurl = 'http://192.0.2.10:9999'\nusername = 'admin'\npassword_env = 'X'\n"
        "[s3]\nbucket = 'bucket'\n",
        encoding="utf-8",
    )
    result = run_archiver("check-config", "--config", str(config), env={**os.environ, "X": "pw"})
    assert result.returncode == 0, result.stderr
    assert "the password crosses the network in clear" in result.stderr


def _toml(value: object) -> str:
    return "false" if value is False else f"'{value}'"


# -- item 9: 0700 folders, 0600 files, whatever the umask ------------------------------------------


def _mode(path: Path) -> int:
    return path.stat().st_mode & 0o777


def test_state_and_work_files_are_private_under_umask_022(
    tmp_path: Path, s3_env: dict[str, str], seaweed: SeaweedS3, bucket: str
) -> None:
    """`archiver run` started from a shell with umask 022; looked at while it runs (the WAL
    and SHM files exist only while the ledger is open)."""
    options = SimulatorOptions(password="pw", start=DAY, per_day=3, max_duration_s=5)
    state = tmp_path / "state"
    ledger = state / "ledger.sqlite3"
    wanted = [state, ledger, state / "work", state / "ledger.sqlite3-wal"]
    wanted.append(state / "ledger.sqlite3-shm")
    with SimulatorThread(options) as sim:
        config = tmp_path / "archiver.toml"
        config.write_text(daemon_toml(sim.base_url, seaweed, bucket, state), encoding="utf-8")
        env = {**os.environ, **s3_env, "TEST_PBX_PASSWORD": "pw"}
        old = os.umask(0o022)
        try:
            daemon = subprocess.Popen(
                [sys.executable, "-m", "archiver", "run", "--config", str(config)],
                env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            )  # fmt: skip
        finally:
            os.umask(old)
        try:
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline and not all(path.exists() for path in wanted):
                time.sleep(0.2)
            found = {path.name: _mode(path) for path in wanted}
        finally:
            daemon.terminate()
            daemon.wait(timeout=60)
    assert found == {path.name: 0o700 if path.is_dir() else 0o600 for path in wanted[:3]} | {
        "ledger.sqlite3-wal": 0o600,
        "ledger.sqlite3-shm": 0o600,
    }


async def test_a_download_is_private_under_umask_022(tmp_path: Path) -> None:
    options = SimulatorOptions(password="pw", start=DAY, per_day=2, max_duration_s=5)
    runner, port = await start_simulator(options)
    client = PbxClient(_pbx_config(port), "pw")
    old = os.umask(0o022)
    try:
        listing = await client.find("20161118-")
        rec = next(r for r in parse_listing("pbx", listing.lines, IST).recordings)
        done = await client.download(rec, tmp_path / "one.src")
        ledger = Ledger.open(tmp_path / "private" / "ledger.sqlite3")
        ledger.close()
    finally:
        os.umask(old)
        await client.close()
        await runner.cleanup()
    assert _mode(done.path) == 0o600
    assert _mode(tmp_path / "private") == 0o700
    assert _mode(tmp_path / "private" / "ledger.sqlite3") == 0o600


# -- item 4: downloads capped by duration, a time limit on every transcode -------------------------


async def test_a_download_bigger_than_its_duration_allows_is_refused(tmp_path: Path) -> None:
    """The PBX sends 60 MiB for a recording whose name says a few seconds: refused at the
    cap (bytes per second of the format x duration + slack), no file left behind."""
    options = SimulatorOptions(
        password="pw", start=DAY, per_day=2, max_duration_s=5, bloat_rate=1.0, bloat_mb=60
    )
    runner, port = await start_simulator(options)
    client = PbxClient(_pbx_config(port), "pw")
    try:
        sim = next(r for r in runner.app[CORPUS_KEY].recordings() if r.valid)
        rec = parse_path("pbx", f"/var/spool/asterisk/monitor/{sim.relative_path}", IST)
        with pytest.raises(PbxError, match=r"bytes or more, but a \d+ s \.\w+ recording") as caught:
            await client.download(rec, tmp_path / "one.src")
        assert not caught.value.transient
        assert max_download_bytes(rec) < 5 * 1024 * 1024
    finally:
        await client.close()
        await runner.cleanup()
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("engine", ["pydub", "ffmpeg"])
def test_a_transcode_past_its_time_limit_is_killed(tmp_path: Path, engine: Engine) -> None:
    source = tmp_path / "long.gsm"
    source.write_bytes(audio.gsm_raw_bytes(1800.0))  # half an hour: far more than 0.3 s of work
    started = time.monotonic()
    with pytest.raises(TranscodeError, match=r"ran longer than 0.3 s and was killed"):
        transcode_to_mp3(
            source, tmp_path / "long.mp3", ffmpeg=find_ffmpeg(None), tags={}, engine=engine,
            timeout_s=0.3,
        )  # fmt: skip
    assert time.monotonic() - started < 10
    assert sorted(path.name for path in tmp_path.iterdir()) == ["long.gsm"]
    assert not _ffmpeg_children()


def _ffmpeg_children() -> list[int]:
    """ffmpeg processes whose parent is this test process."""
    found = []
    for status in Path("/proc").glob("[0-9]*/status"):
        try:
            fields = dict(
                line.split(":\t", 1) for line in status.read_text().splitlines() if ":\t" in line
            )
        except OSError:
            continue
        if fields.get("PPid", "").strip() == str(os.getpid()) and "ffmpeg" in fields["Name"]:
            found.append(int(status.parent.name))
    return found


def test_the_unit_caps_memory_and_tasks_with_measured_values() -> None:
    unit = (Path(__file__).resolve().parent.parent / "systemd" / "archiver.service").read_text()
    settings = dict(
        line.split("=", 1) for line in unit.splitlines() if "=" in line and line[0] != "#"
    )
    assert settings["MemoryMax"] == "1536M" and settings["TasksMax"] == "128"
    # The comment above them says how they were measured.
    comment = unit[: unit.index("\nMemoryMax=")].rstrip().splitlines()[-6:]
    assert all(line.startswith("#") for line in comment)
    assert "bench/unit_limits.py" in comment[0]
