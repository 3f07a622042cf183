"""The PBX simulator, exercised over real HTTP: corpus, command strictness, audio, faults, TLS."""

from __future__ import annotations

import asyncio
import io
import json
import logging
import re
import signal
import ssl
import struct
import subprocess
import sys
import time
import urllib.parse
import urllib.request
import wave
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, replace
from datetime import date, datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import aiohttp
import pytest
from aiohttp import web

from archiver.lab.simulator import audio
from archiver.lab.simulator.corpus import RECORDING_DIR, Corpus, SimRecording
from archiver.lab.simulator.server import (
    CORPUS_KEY,
    SimulatorOptions,
    SimulatorThread,
    start_simulator,
)
from archiver.pipeline.transcode import find_ffmpeg

USER, PASSWORD = "archiver", "s3cret-Pa55"
LIST_ROOT = f"sh /etc/scripts/shell_scripts.sh list_files {RECORDING_DIR}"
FIND = f"find {RECORDING_DIR}/ -name "
FFMPEG = find_ffmpeg(None)  # as the product finds it
ISTANBUL = ZoneInfo("Europe/Istanbul")


@dataclass
class Pbx:
    """A running simulator and a client session for it."""

    base_url: str
    corpus: Corpus
    session: aiohttp.ClientSession
    ssl_context: ssl.SSLContext | None = None

    async def get(self, path: str, **params: str) -> tuple[int, bytes, aiohttp.ClientResponse]:
        query = {"username": USER, "password": PASSWORD, **params}
        url = f"{self.base_url}{path}"
        async with self.session.get(url, params=query, ssl=self.ssl_context or True) as response:
            return response.status, await response.read(), response

    async def cmd(self, cmd: str, **auth: str) -> tuple[int, str]:
        status, body, _ = await self.get("/cgi-bin/system_cmd.cgi", cmd=cmd, **auth)
        return status, body.decode()

    async def lines(self, cmd: str) -> list[str]:
        status, text = await self.cmd(cmd)
        assert status == 200, text
        assert text == "" or text.endswith("\n")
        return text.splitlines()

    async def find(self, pattern: str) -> list[str]:
        return await self.lines(f"{FIND}*{pattern}*")

    async def download(self, relative_path: str) -> tuple[int, bytes, aiohttp.ClientResponse]:
        return await self.get("/cgi-bin/fileget.cgi", action="rcdownload", filename=relative_path)

    async def manifest(self) -> list[dict[str, Any]]:
        status, body, _ = await self.get("/_sim/manifest")
        assert status == 200
        entries: list[dict[str, Any]] = json.loads(body)
        return entries


StartPbx = Callable[..., Awaitable[Pbx]]


@pytest.fixture
async def start_pbx() -> AsyncIterator[StartPbx]:
    """Start simulators with `SimulatorOptions` overrides; stop them all at the end."""
    runners: list[web.AppRunner] = []
    async with aiohttp.ClientSession() as session:

        async def start(**overrides: Any) -> Pbx:
            options = SimulatorOptions(username=USER, password=PASSWORD, **overrides)
            runner, port = await start_simulator(options)
            runners.append(runner)
            return Pbx(options.url(port), runner.app[CORPUS_KEY], session)

        yield start
        for runner in runners:
            await runner.cleanup()


# -- the corpus ------------------------------------------------------------------------------------


async def test_same_seed_same_manifest_other_seed_differs(start_pbx: StartPbx) -> None:
    first = await (await start_pbx(seed=7, days=2, per_day=6)).manifest()
    again = await (await start_pbx(seed=7, days=2, per_day=6)).manifest()
    other = await (await start_pbx(seed=8, days=2, per_day=6)).manifest()
    assert first == again
    assert {e["name"] for e in first} != {e["name"] for e in other}


async def test_days_and_per_day_give_the_counts(start_pbx: StartPbx) -> None:
    pbx = await start_pbx(start=date(2024, 3, 4), days=3, per_day=5, odd_names=False, junk=False)
    manifest = await pbx.manifest()
    assert len(manifest) == 15
    assert all(e["valid"] for e in manifest)
    assert Counter(e["name"][:8] for e in manifest) == {"20240304": 5, "20240305": 5, "20240306": 5}
    default = await (await start_pbx(start=date(2024, 3, 4), days=3, per_day=5)).manifest()
    assert sum(e["valid"] for e in default) == 15 + 9  # the odd-but-valid names
    assert sum(not e["valid"] for e in default) == 5  # the junk


async def test_names_agree_with_their_fields(start_pbx: StartPbx) -> None:
    manifest = await (await start_pbx(seed=3, days=4, per_day=25)).manifest()
    regular = [e for e in manifest if e["valid"]]
    for e in regular:
        started = datetime.fromisoformat(e["started_local"])
        assert started.utcoffset() == ISTANBUL.utcoffset(started.replace(tzinfo=None))
        epoch = int(e["uniqueid"].rpartition("-")[2].split(".")[0])
        assert 0 <= epoch - int(started.timestamp()) <= 3
        assert e["name"] == (
            f"{started:%Y%m%d-%H%M%S}-{e['caller']}-{e['callee']}-{e['uniqueid']}-"
            f"{e['duration_s']}.{e['name'].rpartition('.')[2]}"
        )
        assert e["path"] == f"{RECORDING_DIR}/{e['folder']}/{e['name']}"
    by_time = sorted(regular, key=lambda e: e["started_local"])
    seqs = [int(e["uniqueid"].rpartition(".")[2]) for e in by_time]
    assert seqs == sorted(seqs) and len(set(seqs)) == len(seqs)
    parties = {p for e in regular for p in (e["caller"], e["callee"])}
    plain = {p for p in parties if re.fullmatch(r"1\d\d|90\d{10}", p)}
    assert len(plain) > 20 and any(p.startswith("90") for p in plain)
    assert {e["fmt"] for e in regular} == {"gsm", "wav_pcm", "wav_gsm"}
    durations = [e["duration_s"] for e in regular]
    assert max(durations) > 600 and sum(20 <= d <= 300 for d in durations) > len(durations) / 2


async def test_max_duration_caps_every_recording(start_pbx: StartPbx) -> None:
    manifest = await (await start_pbx(days=3, per_day=30, max_duration_s=45)).manifest()
    assert max(e["duration_s"] for e in manifest) == 45


# -- listings and the documented search patterns ---------------------------------------------------


async def test_listings_match_the_manifest(start_pbx: StartPbx) -> None:
    pbx = await start_pbx(days=2, per_day=8)
    manifest = await pbx.manifest()
    folders = await pbx.lines(LIST_ROOT)
    assert 3 <= len(folders) <= 4
    assert all(re.fullmatch(r"trunk-sip-90\d{10}", f) for f in folders)
    for folder in folders:
        names = await pbx.lines(f"{LIST_ROOT}/{folder}")
        assert names == sorted(e["name"] for e in manifest if e["folder"] == folder)
    assert await pbx.lines(f"{LIST_ROOT}/trunk-sip-nowhere") == []


@dataclass
class DocPbx:
    """A PBX on 18-19 Nov 2016 holding calls like the documentation's examples, by label."""

    pbx: Pbx
    calls: dict[str, SimRecording]


@pytest.fixture
async def doc(start_pbx: StartPbx) -> DocPbx:
    pbx = await start_pbx(start=date(2016, 11, 18), days=2, per_day=4, odd_names=False, junk=False)
    calls = {
        label: pbx.corpus.add(
            caller=caller, callee=callee, duration_s=69, started_local=datetime.fromisoformat(when)
        )
        for label, when, caller, callee in [
            ("18: 100>9031", "2016-11-18T11:03:32", "100", "903123320404"),
            ("18: 9031>100", "2016-11-18T12:10:00", "903123320404", "100"),
            ("18: 101>9031", "2016-11-18T13:00:00", "101", "903123320404"),
            ("19: 100>9031", "2016-11-19T09:00:00", "100", "903123320404"),
        ]
    }
    return DocPbx(pbx, calls)


def _names(paths: list[str]) -> set[str]:
    return {p.rpartition("/")[2] for p in paths}


@pytest.mark.parametrize(
    ("pattern", "expected"),
    [
        ("903123320404", {"18: 100>9031", "18: 9031>100", "18: 101>9031", "19: 100>9031"}),
        ("100-903123320404", {"18: 100>9031", "19: 100>9031"}),
        ("903123320404-100", {"18: 9031>100"}),
        ("20161118-*-100-903123320404", {"18: 100>9031"}),
    ],
)
async def test_documented_patterns(doc: DocPbx, pattern: str, expected: set[str]) -> None:
    found = await doc.pbx.find(pattern)
    assert found == [doc.calls[label].path for label in sorted(expected, key=_by_path(doc))]


def _by_path(doc: DocPbx) -> Callable[[str], tuple[str, str]]:
    return lambda label: (doc.calls[label].folder, doc.calls[label].name)


async def test_date_prefix_lists_that_day_only(doc: DocPbx) -> None:
    paths = await doc.pbx.find("20161118-")
    assert len(paths) == 4 + 3
    assert all(p.startswith(f"{RECORDING_DIR}/trunk-sip-") for p in paths)
    assert all(p.rpartition("/")[2].startswith("20161118-") for p in paths)


async def test_find_prints_matching_folders_too(doc: DocPbx) -> None:
    folder = doc.pbx.corpus.folders()[0]
    paths = await doc.pbx.find(folder.removeprefix("trunk-sip-"))
    assert f"{RECORDING_DIR}/{folder}" in paths


async def test_plus_in_a_pattern_survives_url_encoding(start_pbx: StartPbx) -> None:
    pbx = await start_pbx()
    expected = [r.path for r in pbx.corpus.recordings() if r.caller == "+903123320404"]
    assert len(expected) == 1
    assert await pbx.find("+903123320404") == expected


# -- what the PBX refuses --------------------------------------------------------------------------


@pytest.mark.parametrize(
    "cmd",
    [
        "cat /etc/passwd",
        "find / -name x; rm -rf /",
        f"{FIND}*x* -delete",
        f"{FIND}*x*; reboot",
        f"{FIND}*$(reboot)*",
        f"{FIND}x",
        f"{FIND}*x",
        f"{FIND} *x*",
        f" {FIND}*x*",
        f"find {RECORDING_DIR} -name *x*",
        f"{LIST_ROOT}/../../../../etc",
        f"{LIST_ROOT}/",
        f"{LIST_ROOT} ",
        "sh /etc/scripts/shell_scripts.sh list_files /etc",
        f"{LIST_ROOT}\n",
        "",
    ],
)
async def test_other_commands_are_forbidden(start_pbx: StartPbx, cmd: str) -> None:
    pbx = await start_pbx()
    status, _ = await pbx.cmd(cmd)
    assert status == 403


async def test_a_second_cmd_parameter_is_forbidden(start_pbx: StartPbx) -> None:
    pbx = await start_pbx()
    query = {"cmd": [LIST_ROOT, "reboot"], "username": USER, "password": PASSWORD}
    url = f"{pbx.base_url}/cgi-bin/system_cmd.cgi?{urllib.parse.urlencode(query, doseq=True)}"
    async with pbx.session.get(url) as response:
        assert response.status == 403


@pytest.mark.parametrize(
    "auth",
    [{"password": "wrong"}, {"username": "root"}, {"password": ""}, {"password": PASSWORD + "x"}],
)
@pytest.mark.parametrize(
    ("path", "params"),
    [
        ("/cgi-bin/system_cmd.cgi", {"cmd": LIST_ROOT}),
        ("/cgi-bin/fileget.cgi", {"action": "rcdownload", "filename": "recording/a/b"}),
        ("/_sim/manifest", {}),
    ],
)
async def test_wrong_credentials_get_401(
    start_pbx: StartPbx, auth: dict[str, str], path: str, params: dict[str, str]
) -> None:
    pbx = await start_pbx()
    status, body, _ = await pbx.get(path, **params, **auth)
    assert status == 401
    assert len(body) < 100 and PASSWORD.encode() not in body


async def test_unknown_files_and_traversal_get_404(start_pbx: StartPbx) -> None:
    pbx = await start_pbx()
    real = pbx.corpus.recordings()[0]
    for name in [
        "recording/trunk-sip-1/nope.gsm",
        "recording/../../../etc/passwd",
        real.name,
        f"/var/spool/asterisk/monitor/{real.relative_path}",
        real.relative_path.replace("recording/", "recording//"),
    ]:
        status, _, _ = await pbx.download(name)
        assert status == 404, name
    status, _, _ = await pbx.get("/cgi-bin/fileget.cgi", action="delete", filename=real.name)
    assert status == 400


async def test_password_never_reaches_the_logs(
    start_pbx: StartPbx, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    pbx = await start_pbx(fail_rate=0.5)
    for _ in range(4):
        await pbx.cmd(LIST_ROOT)
        await pbx.cmd(LIST_ROOT, password=PASSWORD + "-wrong")
    assert "system_cmd.cgi" in caplog.text
    assert PASSWORD not in caplog.text


# -- the audio -------------------------------------------------------------------------------------


async def test_downloads_have_the_format_facts(start_pbx: StartPbx) -> None:
    pbx = await start_pbx(days=2, per_day=12, max_duration_s=20)
    seen = Counter[str]()
    for rec in pbx.corpus.recordings():
        status, body, response = await pbx.download(rec.relative_path)
        assert status == 200
        assert response.content_type == "application/octet-stream"
        assert int(response.headers["Content-Length"]) == len(body) == rec.size_bytes
        if rec.valid:
            _check_audio(rec.fmt, rec.duration_s, body)
            seen[f"{rec.fmt}.{rec.name.rpartition('.')[2]}"] += 1
    assert {"gsm.gsm", "wav_pcm.wav", "wav_gsm.WAV", "wav_gsm.wav49", "wav_gsm.wav"} <= set(seen)


def _check_audio(fmt: str, duration_s: int, body: bytes) -> None:
    if fmt == "gsm":
        assert len(body) == 1650 * duration_s
        assert {b >> 4 for b in body[::33]} == {0xD}
    elif fmt == "wav_pcm":
        with wave.open(io.BytesIO(body)) as wav:
            assert (wav.getnchannels(), wav.getsampwidth(), wav.getframerate()) == (1, 2, 8000)
            assert wav.getnframes() == 8000 * duration_s
        assert len(body) == 44 + 16000 * duration_s
    else:
        chunks = _riff_chunks(body)
        tag, channels, rate, per_s, align, _, extra, per_block = struct.unpack(
            "<HHIIHHHH", chunks[b"fmt "]
        )
        assert (tag, channels, rate, per_s, align, extra, per_block) == (
            49,
            1,
            8000,
            1625,
            65,
            2,
            320,
        )
        assert struct.unpack("<I", chunks[b"fact"]) == (8000 * duration_s,)
        assert len(chunks[b"data"]) == 1625 * duration_s


def _riff_chunks(body: bytes) -> dict[bytes, bytes]:
    assert body[:4] == b"RIFF" and body[8:12] == b"WAVE"
    assert struct.unpack_from("<I", body, 4)[0] == len(body) - 8
    chunks, offset = {}, 12
    while offset < len(body):
        chunk_id, size = struct.unpack_from("<4sI", body, offset)
        chunks[chunk_id] = body[offset + 8 : offset + 8 + size]
        offset += 8 + size + size % 2
    assert offset == len(body)
    return chunks


def test_generators_for_fractional_and_zero_durations() -> None:
    assert len(audio.gsm_raw_bytes(0.5)) == 25 * 33
    assert len(audio.wav_pcm_bytes(0.25)) == 44 + 4000
    assert len(audio.wav_gsm_bytes(0.04)) == 60 + 65 + 1  # one block, then the RIFF pad byte
    assert audio.gsm_raw_bytes(0) == b""
    with wave.open(io.BytesIO(audio.header_only_wav())) as wav:
        assert wav.getnframes() == 0
    assert len(audio.header_only_wav()) == 44
    with pytest.raises(ValueError, match="duration_s"):
        audio.wav_pcm_bytes(-1)


def test_long_files_stream_in_bounded_chunks() -> None:
    stream = audio.wav_pcm_stream(900)
    sizes = [len(c) for c in stream.chunks(65536)]
    assert sum(sizes) == stream.size_bytes == 44 + 900 * 16000
    assert max(sizes) == 65536
    assert b"".join(audio.wav_pcm_stream(7).chunks(1000)) == audio.wav_pcm_bytes(7)


async def test_header_only_wav_can_be_added(start_pbx: StartPbx) -> None:
    pbx = await start_pbx()
    rec = pbx.corpus.add(caller="100", callee="903123320404", duration_s=0, fmt="wav_empty")
    status, body, _ = await pbx.download(rec.relative_path)
    assert status == 200 and body == audio.header_only_wav()


@pytest.mark.parametrize(
    ("fmt", "extension", "demuxer"),
    [("gsm", "gsm", "gsm"), ("wav_pcm", "wav", "wav"), ("wav_gsm", "WAV", "wav")],
)
async def test_ffmpeg_decodes_each_format(
    start_pbx: StartPbx, fmt: Any, extension: str, demuxer: str
) -> None:
    pbx = await start_pbx(days=0)
    rec = pbx.corpus.add(
        caller="100", callee="905412535962", duration_s=7, fmt=fmt, extension=extension
    )
    _, body, _ = await pbx.download(rec.relative_path)
    pcm = await asyncio.to_thread(_decode, demuxer, body)
    assert abs(len(pcm) / 16000 - 7) <= 0.1
    assert max(abs(s) for s in struct.unpack(f"<{len(pcm) // 2}h", pcm)) > 3000  # not silence


def _decode(demuxer: str, body: bytes) -> bytes:
    command = [
        FFMPEG,
        "-hide_banner",
        "-loglevel",
        "error",
        "-f",
        demuxer,
        "-i",
        "pipe:0",
        "-f",
        "s16le",
        "-ac",
        "1",
        "-ar",
        "8000",
        "pipe:1",
    ]
    return subprocess.run(command, input=body, capture_output=True, check=True).stdout


# -- odd names and junk ----------------------------------------------------------------------------


async def test_odd_names_are_listed(start_pbx: StartPbx) -> None:
    pbx = await start_pbx(days=1, per_day=3)
    names = [n for f in await pbx.lines(LIST_ROOT) for n in await pbx.lines(f"{LIST_ROOT}/{f}")]
    for odd in [
        r"20161025-161938--903123320404-\d+\.\d+-4\.gsm",
        r".*-anonymous-100-.*",
        r".*-101-unknown-.*",
        r".*-\+903123320404-100-.*",
        r".*-\d{20,}-.*",
        r".*-pbx1-\d{10}\.\d+-\d+\.gsm",
        r".*\.WAV",
        r".*\.wav49",
    ]:
        assert any(re.fullmatch(odd, n) for n in names), odd


async def test_junk_is_listed_and_marked_invalid(start_pbx: StartPbx) -> None:
    pbx = await start_pbx(days=1, per_day=3)
    junk = {e["name"] for e in await pbx.manifest() if not e["valid"]}
    assert {"README.txt", "core.1234"} <= junk
    assert any(re.fullmatch(r"20161032-.*", n) for n in junk)
    assert _names(await pbx.find("20161025-")) & junk  # junk the date search also returns
    listed = {n for f in await pbx.lines(LIST_ROOT) for n in await pbx.lines(f"{LIST_ROOT}/{f}")}
    assert junk <= listed


# -- faults ----------------------------------------------------------------------------------------


async def _statuses(pbx: Pbx, count: int) -> list[int | str]:
    """Status per listing request, or the name of the client error it raised."""
    results: list[int | str] = []
    for _ in range(count):
        try:
            results.append((await pbx.cmd(LIST_ROOT))[0])
        except aiohttp.ClientError as exc:
            results.append(type(exc).__name__)
    return results


async def test_fail_rate_is_repeatable_and_close_to_configured(start_pbx: StartPbx) -> None:
    first = await _statuses(await start_pbx(seed=5, fail_rate=0.3), 200)
    again = await _statuses(await start_pbx(seed=5, fail_rate=0.3), 200)
    assert first == again
    failures = [s for s in first if s != 200]
    assert set(failures) == {500, 503}
    assert 0.2 < len(failures) / 200 < 0.4


async def test_truncate_gives_short_bodies(start_pbx: StartPbx) -> None:
    pbx = await start_pbx(truncate_rate=1.0)
    rec = next(r for r in pbx.corpus.recordings() if r.valid)
    kinds = Counter[str]()
    for _ in range(12):
        url = f"{pbx.base_url}/cgi-bin/fileget.cgi"
        query = {"action": "rcdownload", "filename": rec.relative_path}
        async with pbx.session.get(
            url, params={**query, "username": USER, "password": PASSWORD}
        ) as r:
            kinds["chunked" if r.headers.get("Transfer-Encoding") else "length"] += 1
            with pytest.raises(aiohttp.ClientPayloadError):
                await r.read()
    assert set(kinds) == {"chunked", "length"}
    assert set(await _statuses(pbx, 5)) == {"ClientPayloadError"}


async def test_reset_drops_the_connection(start_pbx: StartPbx) -> None:
    pbx = await start_pbx(reset_rate=1.0)
    results = await _statuses(pbx, 12)
    assert all(isinstance(r, str) for r in results)


async def test_html_errors_answer_200_with_a_login_page(start_pbx: StartPbx) -> None:
    pbx = await start_pbx(fail_rate=1.0, html_errors=True)
    status, body, response = await pbx.get("/cgi-bin/system_cmd.cgi", cmd=LIST_ROOT)
    assert status == 200 and response.content_type == "text/html"
    assert b"<html>" in body and PASSWORD.encode() not in body
    rec = pbx.corpus.recordings()[0]
    status, _, _ = await pbx.download(rec.relative_path)
    assert status in {500, 503}  # downloads still fail with a status


async def test_delay_and_faults_spare_the_manifest(start_pbx: StartPbx) -> None:
    pbx = await start_pbx(fail_rate=0.5, reset_rate=0.5, delay_ms=150)
    began = time.monotonic()
    await pbx.manifest()
    assert time.monotonic() - began < 0.1
    began = time.monotonic()
    await _statuses(pbx, 2)
    assert time.monotonic() - began >= 0.3


def test_options_are_validated_as_a_whole() -> None:
    with pytest.raises(ValueError) as info:
        SimulatorOptions(fail_rate=0.7, truncate_rate=0.5, delay_ms=-1, timezone="Mars/Base")
    message = str(info.value)
    for part in ["must be <= 1", "delay_ms", "Mars/Base"]:
        assert part in message
    assert PASSWORD not in repr(SimulatorOptions(password=PASSWORD))


# -- TLS, the thread wrapper and the command line --------------------------------------------------


@pytest.fixture(scope="module")
def certificate(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A self-signed certificate for 127.0.0.1, made with `cryptography` as the TLS tests make
    theirs (it was the openssl command, and the test skipped where that was missing)."""
    from cryptography.hazmat.primitives.asymmetric import ec
    from test_tls import _issue, _write

    key = ec.generate_private_key(ec.SECP256R1())
    made = _write(
        tmp_path_factory.mktemp("tls"),
        "pbx",
        _issue("127.0.0.1", key, ("127.0.0.1", key), ca=False),
        key,
    )
    return made.cert, made.key


async def test_tls_with_a_self_signed_certificate(
    start_pbx: StartPbx, certificate: tuple[Path, Path]
) -> None:
    cert, key = certificate
    pbx = await start_pbx(tls_cert=cert, tls_key=key)
    assert pbx.base_url.startswith("https://127.0.0.1:")
    with pytest.raises(aiohttp.ClientConnectorCertificateError):
        await pbx.cmd(LIST_ROOT)  # verification stays on: the system CAs don't know it
    pbx.ssl_context = ssl.create_default_context(cafile=str(cert))
    assert len(await pbx.lines(LIST_ROOT)) >= 3


def _fetch(url: str, context: ssl.SSLContext | None = None) -> str:
    with urllib.request.urlopen(url, timeout=5, context=context) as response:  # noqa: S310
        body: bytes = response.read()
    return body.decode()


def test_simulator_thread_serves_and_stops(certificate: tuple[Path, Path]) -> None:
    cert, key = certificate
    options = SimulatorOptions(username=USER, password=PASSWORD, tls_cert=cert, tls_key=key)
    query = urllib.parse.urlencode(
        {"cmd": f"{FIND}*905412535962*", "username": USER, "password": PASSWORD}
    )
    context = ssl.create_default_context(cafile=str(cert))
    with SimulatorThread(options) as sim:
        assert sim.base_url == f"https://127.0.0.1:{sim.port}"
        rec = sim.corpus.add(caller="100", callee="905412535962", duration_s=5)
        assert rec.path in _fetch(f"{sim.base_url}/cgi-bin/system_cmd.cgi?{query}", context)
    with pytest.raises(OSError):
        _fetch(f"{sim.base_url}/cgi-bin/system_cmd.cgi?{query}", context)
    again = SimulatorThread(replace(options, port=sim.port))  # the port is free again
    with again, pytest.raises(OSError), SimulatorThread(replace(options, port=again.port)):
        pass  # the port is taken: entering the second one re-raises the bind error


CLI = (
    "import argparse, sys\n"
    "from archiver.lab.simulator.server import add_arguments, run_from_args\n"
    "parser = argparse.ArgumentParser()\n"
    "add_arguments(parser)\n"
    "sys.exit(run_from_args(parser.parse_args(sys.argv[1:])))\n"
)


def test_command_line_serves_until_sigterm() -> None:
    args = [
        "--listen",
        "127.0.0.1:0",
        "--username",
        USER,
        "--password",
        PASSWORD,
        "--seed",
        "4",
        "--start",
        "2024-01-02",
        "--days",
        "2",
        "--per-day",
        "3",
    ]
    with subprocess.Popen(
        [sys.executable, "-c", CLI, *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    ) as process:
        assert process.stdout is not None
        line = process.stdout.readline()
        assert PASSWORD not in line
        match = re.search(r"listening on (http://127\.0\.0\.1:\d+)", line)
        assert match, line
        query = urllib.parse.urlencode({"username": USER, "password": PASSWORD})
        manifest = json.loads(_fetch(f"{match[1]}/_sim/manifest?{query}"))
        assert sum(e["name"].startswith("20240103-") for e in manifest) == 3
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=10) == 0


def test_command_line_rejects_inconsistent_rates() -> None:
    args = ["--username", "u", "--password", "p", "--fail-rate", "0.6", "--reset-rate", "0.6"]
    result = subprocess.run(
        [sys.executable, "-c", CLI, *args], capture_output=True, text=True, timeout=30
    )
    assert result.returncode == 2
    assert "must be <= 1" in result.stderr
