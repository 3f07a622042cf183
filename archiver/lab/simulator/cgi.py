"""`--cgi-strict`: the simulator as a small embedded web server running CGI scripts would be.

aiohttp forgives what such a box does not. In this mode the simulator's API is served by a
minimal HTTP/1.0 server written here, with the habits of a firmware CGI:

- the query string is split on `&` and `=` and decoded as a minimal CGI does: `%XX` escapes
  only, so a `+` stays a `+` (a client that sends a space as `+` runs `find+/var/...`);
- every answer is `HTTP/1.0` with `Content-Type: text/html`, no Content-Length, and the
  connection is closed after the body (the only end-of-body marker);
- `system_cmd.cgi` with a command it does not know answers 200 with an empty body (the shell
  printed "not found" to stderr, which the page does not show);
- a wrong username or password answers 200 with the web interface's login page.

This module is a test oracle: it shares no parsing code with the product (`archiver.pbx`).
The corpus, fault plan, dialer and request log are those of the aiohttp app it fronts.
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import logging
import random
import socket
import ssl
import struct
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Final

from aiohttp import web

from archiver.lab.simulator import server as sim
from archiver.lab.simulator.dialer import validate_autocall
from archiver.lab.simulator.hostile import hostile_body

__all__ = ["StrictCgiServer", "cgi_decode", "cgi_query"]

_log = logging.getLogger("archiver.lab.simulator.access")
_MAX_LINE_BYTES: Final = 8192
_MAX_HEADERS: Final = 100
_READ_TIMEOUT_S: Final = 10.0
_HEX: Final = b"0123456789abcdefABCDEF"


def cgi_decode(text: str) -> str:
    """Decode `%XX` escapes (as bytes, then UTF-8 with replacement) and nothing else: `+` stays
    `+`, and a `%` not followed by two hex digits stays as it is."""
    raw = text.encode("latin-1", errors="replace")  # the request line was read as latin-1
    out = bytearray()
    i = 0
    while i < len(raw):
        pair = raw[i + 1 : i + 3]
        if raw[i] == ord("%") and len(pair) == 2 and all(c in _HEX for c in pair):
            out.append(int(pair, 16))
            i += 3
        else:
            out.append(raw[i])
            i += 1
    return out.decode("utf-8", errors="replace")


def cgi_query(query: str) -> dict[str, list[str]]:
    """Split a raw query string on `&`, then each part on its first `=`, and `cgi_decode` both."""
    values: dict[str, list[str]] = {}
    for part in query.split("&"):
        if not part:
            continue
        name, _, value = part.partition("=")
        values.setdefault(cgi_decode(name), []).append(cgi_decode(value))
    return values


@dataclass(frozen=True)
class _Request:
    line: str
    path: str
    query: dict[str, list[str]]

    def first(self, name: str) -> str:
        return self.query.get(name, [""])[0]


@dataclass(frozen=True)
class _Answer:
    status: int = 200
    chunks: Iterable[bytes] = ()
    listing: bool = False
    size_bytes: int = 0


_REASONS: Final = {200: "OK", 400: "Bad Request", 404: "Not Found", 500: "Internal Server Error",
                   503: "Service Unavailable"}  # fmt: skip


@dataclass
class StrictCgiServer:
    """Serves `app`'s corpus the strict-CGI way on an asyncio server; `close()` stops it."""

    app: web.Application
    _server: asyncio.Server | None = field(default=None, init=False)

    async def start(self, host: str, port: int, tls: ssl.SSLContext | None) -> int:
        """Listen on `host:port` (0: a free port); return the port."""
        self._server = await asyncio.start_server(
            self._serve, host, port, ssl=tls, limit=_MAX_LINE_BYTES * 2
        )
        bound: int = self._server.sockets[0].getsockname()[1]
        return bound

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._server.wait_closed(), timeout=2)
            self._server = None

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            request = await asyncio.wait_for(_read_request(reader), timeout=_READ_TIMEOUT_S)
            if request is None:
                return
            self.app[sim.REQUEST_LINES_KEY].append(request.line)
            answer = self._dispatch(request)
            await self._send(writer, request, answer)
        except (ConnectionError, TimeoutError, asyncio.IncompleteReadError, ValueError):
            pass
        finally:
            with contextlib.suppress(Exception):
                writer.close()

    def _dispatch(self, request: _Request) -> _Answer:
        handlers = {
            "/cgi-bin/system_cmd.cgi": self._system_cmd,
            "/cgi-bin/fileget.cgi": self._fileget,
            "/cgi-bin/autocalls.cgi": self._autocalls,
        }
        handler = handlers.get(request.path)
        if handler is None:
            return _text(404, "404 Not Found\n")
        if not self._authorized(request):
            return _text(200, sim.LOGIN_PAGE)
        return handler(request)

    def _authorized(self, request: _Request) -> bool:
        options = self.app[sim.OPTIONS_KEY]
        user_ok = hmac.compare_digest(request.first("username").encode(), options.username.encode())
        password = request.first("password").encode()
        password_ok = hmac.compare_digest(password, options.password.encode())
        return user_ok and password_ok

    def _system_cmd(self, request: _Request) -> _Answer:
        command = sim.parse_command(request.first("cmd"))
        options = self.app[sim.OPTIONS_KEY]
        if command is None or not sim.runs(options, command):
            return _text(200, "")  # the shell said "not found" on stderr; the page is empty
        lines = sim.run_command(self.app[sim.CORPUS_KEY], command)
        if options.hostile_lines:
            body = hostile_body(lines, options.hostile_lines, options.seed)
        else:
            body = "".join(f"{line}\n" for line in lines).encode()
        return _Answer(200, [body], listing=True, size_bytes=len(body))

    def _fileget(self, request: _Request) -> _Answer:
        if request.first("action") != "rcdownload":
            return _text(200, "")
        filename = request.first("filename")
        self.app[sim.REQUESTED_KEY].append(filename)
        corpus = self.app[sim.CORPUS_KEY]
        rec = corpus.by_relative_path(filename)
        if rec is None:
            return _text(404, "404 Not Found\n")
        stream = corpus.audio_stream(rec)
        return _Answer(200, stream.chunks(), size_bytes=stream.size_bytes)

    def _autocalls(self, request: _Request) -> _Answer:
        query = {k: v for k, v in request.query.items() if k not in ("username", "password")}
        reason = validate_autocall(query)
        if reason is not None:
            return _text(400, f"400: Bad Request: {reason}\n")
        one = {name: values[0] for name, values in query.items()}
        self.app[sim.DIALER_KEY].start(
            one["number"], int(one["mr"]), int(one["rt"]), one["datetime"]
        )
        return _text(200, "OK\n")

    async def _send(self, writer: asyncio.StreamWriter, request: _Request, answer: _Answer) -> None:
        options = self.app[sim.OPTIONS_KEY]
        if options.delay_ms:
            await asyncio.sleep(options.delay_ms / 1000)
        limit = answer.size_bytes
        faultable = request.path in ("/cgi-bin/system_cmd.cgi", "/cgi-bin/fileget.cgi")
        fault = self.app[sim.FAULTS_KEY].next() if faultable and answer.status == 200 else None
        if fault is not None and fault.kind not in ("fail", "truncate", "reset"):
            fault = None  # redirect, drip and bloat are the aiohttp mode's (issue 11)
        if fault is not None:
            _log.info("injecting fault %s/%s on %s", fault.kind, fault.variant, request.path)
            if fault.kind == "fail":
                if answer.listing and options.html_errors:
                    answer = _text(200, sim.LOGIN_PAGE)
                else:
                    answer = _text(int(fault.variant), f"{fault.variant}: Server Error\n")
                fault = None
            elif fault.kind == "reset" and fault.variant == "before":
                _drop(writer, reset=True)
                return
            else:
                limit = self._cut_at(answer.size_bytes)
        reason = _REASONS.get(answer.status, "Error")
        writer.write(
            f"HTTP/1.0 {answer.status} {reason}\r\nContent-Type: text/html\r\n\r\n".encode()
        )
        await _write_limited(writer, answer.chunks, limit if fault is not None else None)
        _log.info("%s %s %s (cgi-strict)", "GET", request.path, answer.status)
        if fault is not None:
            _drop(writer, reset=fault.kind == "reset")

    def _cut_at(self, size: int) -> int:
        """Where a cut connection ends the body: anywhere (repeatably per seed and request),
        as a real cut would, so two cuts rarely leave the same bytes."""
        count = len(self.app[sim.REQUEST_LINES_KEY])
        rng = random.Random(f"archiver-sim:{self.app[sim.OPTIONS_KEY].seed}:cut:{count}")
        return int(size * rng.uniform(0.05, 0.95))


def _text(status: int, body: str) -> _Answer:
    data = body.encode()
    return _Answer(status, [data], size_bytes=len(data))


async def _write_limited(
    writer: asyncio.StreamWriter, chunks: Iterable[bytes], limit: int | None
) -> None:
    sent = 0
    for chunk in chunks:
        piece = chunk if limit is None else chunk[: limit - sent]
        if piece:
            writer.write(piece)
            await writer.drain()
        sent += len(piece)
        if limit is not None and sent >= limit:
            return
    await writer.drain()


async def _read_request(reader: asyncio.StreamReader) -> _Request | None:
    """Read the request line and the headers (ignored); None on an empty connection."""
    raw_line = await reader.readline()
    if not raw_line:
        return None
    line = raw_line.decode("latin-1").rstrip("\r\n")
    for _ in range(_MAX_HEADERS):
        header = await reader.readline()
        if header in (b"\r\n", b"\n", b""):
            break
    method, target, _version = line.split(" ", 2)
    if method != "GET":
        raise ValueError("only GET")
    path, _, query = target.partition("?")
    return _Request(line=line, path=path, query=cgi_query(query))


def _drop(writer: asyncio.StreamWriter, *, reset: bool) -> None:
    sock = writer.get_extra_info("socket")
    if reset and sock is not None:
        # Linger 0: the close sends RST instead of FIN, as a crashed box would.
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    if reset:
        writer.transport.abort()
    else:
        writer.close()
