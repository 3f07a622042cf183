"""The PBX client against the simulator over real HTTP: commands, listings, downloads, faults."""

from __future__ import annotations

import hashlib
from collections.abc import AsyncIterator
from datetime import date
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from archiver.config import PbxConfig
from archiver.lab.simulator import SimulatorOptions, start_simulator
from archiver.names import parse_path
from archiver.pbx.client import (
    PbxAuthError,
    PbxClient,
    PbxError,
    date_pattern,
    find_command,
    list_files_command,
    split_listing,
)

IST = ZoneInfo("Europe/Istanbul")
PASSWORD = "pbx-Secret-7731"


def _cfg(url: str, **extra: object) -> PbxConfig:
    return PbxConfig.model_validate(
        {"url": url, "username": "admin", "password": PASSWORD, "request_timeout_s": 2, **extra}
    )


@pytest.fixture
async def pbx() -> AsyncIterator[tuple[PbxClient, SimulatorOptions]]:
    options = SimulatorOptions(
        username="admin", password=PASSWORD, seed=3, start=date(2016, 11, 18), per_day=6,
        max_duration_s=30,
    )  # fmt: skip
    runner, port = await start_simulator(options)
    client = PbxClient(_cfg(f"http://127.0.0.1:{port}"), PASSWORD)
    try:
        yield client, options
    finally:
        await client.close()
        await runner.cleanup()


async def _client_for(options: SimulatorOptions) -> tuple[PbxClient, object]:
    runner, port = await start_simulator(options)
    return PbxClient(_cfg(f"http://127.0.0.1:{port}"), PASSWORD), runner


def test_documented_command_shapes() -> None:
    assert (
        find_command("20161118-") == "find /var/spool/asterisk/monitor/recording/ -name *20161118-*"
    )
    assert find_command("20161118-*-100-903123320404").endswith(
        "-name *20161118-*-100-903123320404*"
    )
    assert list_files_command() == (
        "sh /etc/scripts/shell_scripts.sh list_files /var/spool/asterisk/monitor/recording"
    )
    assert list_files_command("trunk-sip-908502591905").endswith(
        "/recording/trunk-sip-908502591905"
    )
    assert date_pattern(date(2016, 11, 18)) == "20161118-"


_FIND_TEMPLATE = (
    r"find /var/spool/asterisk/monitor/recording/ -name \*[A-Za-z0-9+*][A-Za-z0-9+*.-]{0,63}\*"
)


@settings(max_examples=400, deadline=None)
@given(st.text(max_size=80))
def test_commands_are_fixed_template_or_refused(value: str) -> None:
    import re

    try:
        command = find_command(value)
    except ValueError:
        pass
    else:
        assert re.fullmatch(_FIND_TEMPLATE, command)
        assert not any(c in value for c in " ;|&$`'\"<>()\\\n\r\t/")
    try:
        command = list_files_command(value)
    except ValueError:
        return
    assert re.fullmatch(
        r"sh /etc/scripts/shell_scripts.sh list_files /var/spool/asterisk/monitor/recording/"
        r"[A-Za-z0-9][A-Za-z0-9_+-]{0,63}",
        command,
    )


async def test_find_lists_a_day(pbx: tuple[PbxClient, SimulatorOptions]) -> None:
    client, options = pbx
    listing = await client.find(date_pattern(date(2016, 11, 18)))
    expected = options.build_corpus().find("*20161118-*")
    assert sorted(listing.lines) == sorted(expected)
    valid = [line for line in listing.lines if _parses(line)]
    assert len(valid) == 6 + 9  # per_day plus the odd-but-valid names of the first day


def _parses(line: str) -> bool:
    try:
        parse_path("pbx", line, IST)
    except ValueError:
        return False
    return True


async def test_folders_and_files(pbx: tuple[PbxClient, SimulatorOptions]) -> None:
    client, options = pbx
    folders = await client.list_folders()
    assert sorted(folders.lines) == sorted(options.build_corpus().folders())
    files = await client.list_files(folders.lines[0])
    assert files.lines and all("/" not in line for line in files.lines)


async def test_download_streams_and_hashes(
    pbx: tuple[PbxClient, SimulatorOptions], tmp_path: Path
) -> None:
    client, options = pbx
    corpus = options.build_corpus()
    odd = [r for r in corpus.recordings() if r.valid and r.name.count("+")]
    assert odd, "the corpus has a '+' caller: the client must percent-encode it"
    for sim in odd[:1] + [r for r in corpus.recordings() if r.valid][:3]:
        rec = parse_path("pbx", sim.path, IST)
        got = await client.download(rec, tmp_path / "a.src")
        body = (tmp_path / "a.src").read_bytes()
        assert got.size_bytes == len(body) == sim.size_bytes
        assert (
            got.sha256
            == hashlib.sha256(body).hexdigest()
            == hashlib.sha256(corpus.audio_bytes(sim)).hexdigest()
        )
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.src"]


async def test_wrong_password_is_one_clear_error() -> None:
    options = SimulatorOptions(username="admin", password="the-real-one-123", per_day=1)
    runner, port = await start_simulator(options)
    client = PbxClient(_cfg(f"http://127.0.0.1:{port}"), PASSWORD)
    try:
        with pytest.raises(PbxAuthError) as caught:
            await client.find("20161025-")
    finally:
        await client.close()
        await runner.cleanup()
    assert "refused the username/password" in str(caught.value)
    assert PASSWORD not in str(caught.value) and not caught.value.transient
    assert caught.value.kind == "refused"


async def test_truncated_download_leaves_nothing(tmp_path: Path) -> None:
    options = SimulatorOptions(
        username="admin", password=PASSWORD, per_day=3, truncate_rate=1.0, seed=5
    )
    client, runner = await _client_for(options)
    sim = next(r for r in options.build_corpus().recordings() if r.valid)
    rec = parse_path("pbx", sim.path, IST)
    try:
        for _ in range(4):  # both truncation styles: short Content-Length, cut chunked body
            with pytest.raises(PbxError) as caught:
                await client.download(rec, tmp_path / "x.src")
            assert caught.value.transient and caught.value.kind == "truncated"
            assert PASSWORD not in str(caught.value)
    finally:
        await client.close()
        await runner.cleanup()  # type: ignore[attr-defined]
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(
    ("fault", "expected", "kinds"),
    [
        ({"fail_rate": 1.0}, "answered HTTP 5", {"http_5xx"}),
        ({"reset_rate": 1.0}, "PBX 'pbx'", {"disconnected", "connection", "truncated"}),
        ({"fail_rate": 1.0, "html_errors": True}, "HTML page", {"html_page"}),
        ({"delay_ms": 4000}, "timed out", {"timeout"}),
    ],
)
async def test_listing_faults_are_errors_not_empty(
    fault: dict[str, object], expected: str, kinds: set[str]
) -> None:
    options = SimulatorOptions(username="admin", password=PASSWORD, per_day=3, **fault)  # type: ignore[arg-type]
    client, runner = await _client_for(options)
    try:
        with pytest.raises(PbxError) as caught:
            await client.find("20161025-")
    finally:
        await client.close()
        await runner.cleanup()  # type: ignore[attr-defined]
    assert expected in str(caught.value)
    assert caught.value.transient and caught.value.kind in kinds
    assert PASSWORD not in str(caught.value) and "password" not in str(caught.value)


def test_split_listing_hostile_bytes() -> None:
    body = (
        "\ufeff/var/spool/asterisk/monitor/recording/t/20161118-110332-100-200-1479456211.1-6.wav\r\n"
        "\r\n\n   \n../../etc/passwd\n"
    ).encode()
    listing = split_listing(body)
    assert listing.lines[0].startswith("/var/spool")  # the BOM does not spoil the first line
    assert listing.lines[1] == "../../etc/passwd"
    assert listing.blank_lines == 4
    with pytest.raises(PbxError, match="HTML"):
        split_listing(b"  <!DOCTYPE html><html><body>Please log in</body></html>")
    assert split_listing(b"").lines == []
