"""The exact request line of every request shape, as the simulator received it.

The document writes `cmd=find%20/var/spool/asterisk/monitor/recording/%20-name%20*20161118-*`: a
space is `%20` (a firmware CGI that decodes `%XX` only would run `find+/var/...` for a `+`), `/`
and `*` stay as they are, and a `+` inside a value is `%2B`. Each shape is pinned byte for byte,
against the aiohttp simulator and the strict-CGI one.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import date
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from aiohttp import web

from archiver.calls.autocall import AutocallRequest
from archiver.config import PbxConfig
from archiver.lab.simulator import REQUEST_LINES_KEY, SimulatorOptions, start_simulator
from archiver.names import parse_path
from archiver.pbx.client import PbxClient
from archiver.pbx.query import encode_value, query_string, request_target

IST = ZoneInfo("Europe/Istanbul")
# Every character a query string treats specially, so its encoding is pinned too.
PASSWORD = "p+ss w/rd&x=1%*"
PASSWORD_ON_WIRE = "p%2Bss%20w/rd%26x%3D1%25*"
CREDENTIALS = f"username=admin&password={PASSWORD_ON_WIRE}"
ROOT = "/var/spool/asterisk/monitor/recording"


@pytest.fixture(params=[False, True], ids=["aiohttp", "cgi-strict"])
async def pbx(request: pytest.FixtureRequest) -> AsyncIterator[tuple[PbxClient, web.AppRunner]]:
    options = SimulatorOptions(
        username="admin", password=PASSWORD, start=date(2016, 11, 18), per_day=4,
        cgi_strict=request.param,
    )  # fmt: skip
    runner, port = await start_simulator(options)
    cfg = PbxConfig.model_validate(
        {"url": f"http://127.0.0.1:{port}", "username": "admin", "password": PASSWORD}
    )
    client = PbxClient(cfg, PASSWORD)
    try:
        yield client, runner
    finally:
        await client.close()
        await runner.cleanup()


def _last_line(runner: web.AppRunner) -> str:
    return runner.app[REQUEST_LINES_KEY][-1]


def test_encoding_rules() -> None:
    assert encode_value("find /x/ -name *20161118-*") == "find%20/x/%20-name%20*20161118-*"
    assert encode_value("+903123320404") == "%2B903123320404"
    assert encode_value("a&b=c%d#e?f") == "a%26b%3Dc%25d%23e%3Ff"
    assert encode_value("ç") == "%C3%A7"
    assert encode_value("A-Z_a.z~09") == "A-Z_a.z~09"
    assert query_string([("b", "1"), ("a", "")]) == "b=1&a="
    assert request_target("/cgi-bin/x.cgi", [("k", "v v")]) == "/cgi-bin/x.cgi?k=v%20v"
    with pytest.raises(ValueError):
        request_target("/cgi bin", [])


async def test_list_folders_line(pbx: tuple[PbxClient, web.AppRunner]) -> None:
    client, runner = pbx
    assert (await client.list_folders()).lines
    assert _last_line(runner) == (
        "GET /cgi-bin/system_cmd.cgi?cmd=sh%20/etc/scripts/shell_scripts.sh%20list_files%20"
        f"{ROOT}&{CREDENTIALS} HTTP/1.1"
    )


async def test_list_one_folder_line(pbx: tuple[PbxClient, web.AppRunner]) -> None:
    client, runner = pbx
    folder = (await client.list_folders()).lines[0]
    assert (await client.list_files(folder)).lines
    assert _last_line(runner) == (
        "GET /cgi-bin/system_cmd.cgi?cmd=sh%20/etc/scripts/shell_scripts.sh%20list_files%20"
        f"{ROOT}/{folder}&{CREDENTIALS} HTTP/1.1"
    )


async def test_find_line_is_the_documents(pbx: tuple[PbxClient, web.AppRunner]) -> None:
    client, runner = pbx
    assert (await client.find("20161118-")).lines
    # The document's own example, character for character.
    assert _last_line(runner) == (
        "GET /cgi-bin/system_cmd.cgi?cmd=find%20/var/spool/asterisk/monitor/recording/"
        f"%20-name%20*20161118-*&{CREDENTIALS} HTTP/1.1"
    )
    await client.find("20161118-*-100-903123320404")
    assert _last_line(runner).startswith(
        "GET /cgi-bin/system_cmd.cgi?cmd=find%20/var/spool/asterisk/monitor/recording/"
        "%20-name%20*20161118-*-100-903123320404*&username="
    )
    await client.find("+903123320404")
    assert "-name%20*%2B903123320404*&username=" in _last_line(runner)


async def test_download_line(pbx: tuple[PbxClient, web.AppRunner], tmp_path: Path) -> None:
    client, runner = pbx
    lines = (await client.find("20161118-")).lines
    plus = next(line for line in lines if "-+" in line)  # a caller or callee with a leading +
    for line in (lines[0], plus):
        rec = parse_path("pbx", line, IST)
        await client.download(rec, tmp_path / "a.src")
        relative = rec.relative_path.replace("+", "%2B")
        assert _last_line(runner) == (
            f"GET /cgi-bin/fileget.cgi?action=rcdownload&filename={relative}&{CREDENTIALS} HTTP/1.1"
        )


async def test_autocall_line(pbx: tuple[PbxClient, web.AppRunner]) -> None:
    client, runner = pbx
    now = AutocallRequest("903123320404", 2, 10, 1, 1, "", "-1")
    await client.place_call(now.params())
    # The document's example, credentials last.
    assert _last_line(runner) == (
        "GET /cgi-bin/autocalls.cgi?action=call&number=903123320404&mr=2&rt=10&dp=1&dest=1"
        f"&detail=&datetime=-1&{CREDENTIALS} HTTP/1.1"
    )
    later = AutocallRequest("903123320404", 0, 5, 2, 3, "a b+c", "2026-12-01 09:30:00")
    await client.place_call(later.params())
    assert _last_line(runner) == (
        "GET /cgi-bin/autocalls.cgi?action=call&number=903123320404&mr=0&rt=5&dp=2&dest=3"
        f"&detail=a%20b%2Bc&datetime=2026-12-01%2009%3A30%3A00&{CREDENTIALS} HTTP/1.1"
    )
