"""Issue 11: a hostile or broken PBX, a hostile network, a careless config. Each test here
reproduced its fault on the code before the fix (real HTTP, real files)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from structlog.testing import capture_logs

from archiver.calls.callbacks import CALLBACK_STATS_KEY, add_callback_routes, classify_status
from archiver.config import CallbacksConfig, PbxConfig
from archiver.lab.simulator import SimulatorOptions, start_simulator
from archiver.names import RECORDING_ROOT
from archiver.pbx.client import PbxClient, PbxError
from archiver.service.http import Health, build_http_app, start_http
from archiver.state.calls import CallLog

TOKEN = "cb-token-0123456789abcdef"
GOOD_QUERY = "?sonuc=ANSWER&telefon=903123320404&son=1"


async def _callback_server(
    tmp_path: Path, **settings: Any
) -> AsyncIterator[tuple[str, CallLog, web.Application]]:
    cfg = CallbacksConfig(enabled=True, token=TOKEN, **settings)  # type: ignore[arg-type]
    calls = CallLog.open(tmp_path / "ledger.sqlite3")
    app = build_http_app(Health())
    add_callback_routes(app, cfg, calls)
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
        assert app[CALLBACK_STATS_KEY].refused[403] == 50


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
