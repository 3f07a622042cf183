"""An aiohttp server that imitates the PBX's HTTP API (pbx-api.md), with repeatable faults.

`system_cmd.cgi` answers only the two documented command shapes and refuses everything else
with 403, so an archiver that builds any other command fails its tests. Credentials are checked
on every call and never echoed or logged: the access log drops the query string.
"""

from __future__ import annotations

import argparse
import asyncio
import hmac
import itertools
import logging
import random
import re
import signal
import socket
import ssl
import struct
import sys
import threading
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from types import TracebackType
from typing import Final, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from aiohttp import web
from aiohttp.abc import AbstractAccessLogger
from aiohttp.typedefs import Handler

from archiver.lab.simulator.corpus import DEFAULT_TIMEZONE, RECORDING_DIR, Corpus
from archiver.lab.simulator.dialer import (
    DEFAULT_OUTCOMES,
    SON_STYLES,
    Dialer,
    parse_outcomes,
    validate_autocall,
)
from archiver.lab.simulator.hostile import hostile_body

LIST_FOLDERS_COMMAND = f"sh /etc/scripts/shell_scripts.sh list_files {RECORDING_DIR}"
_LIST_FOLDER_RE = re.compile(
    re.escape(f"{LIST_FOLDERS_COMMAND}/") + r"(?P<folder>[A-Za-z0-9][A-Za-z0-9._+-]*)"
)
# The documented shape `-name *PATTERN*`; the pattern may contain `*` but no other glob or shell
# metacharacter, and nothing may follow it (no `-delete`, no `; rm`).
_FIND_RE = re.compile(
    re.escape(f"find {RECORDING_DIR}/ -name ") + r"(?P<glob>\*[A-Za-z0-9._+*-]*\*)"
)

_TEXT = "text/plain"
LOGIN_PAGE = (
    "<!DOCTYPE html>\n<html><head><title>IP PBX - Login</title></head>\n"
    '<body><form method="post" action="/cgi-bin/login.cgi">\n'
    '<p>Session expired. Please log in again.</p>\n<input name="username">\n'
    '<input name="password" type="password">\n</form></body></html>\n'
)
_log = logging.getLogger(__name__)


@dataclass
class SimulatorOptions:
    """Everything the simulator needs; validated as a whole on construction (ValueError).

    Fault rates are probabilities per request to `system_cmd.cgi` and `fileget.cgi`, drawn from
    `seed` and the request's sequence number so that a run repeats; they must sum to at most 1.
    """

    host: str = "127.0.0.1"
    port: int = 0
    username: str = "admin"
    password: str = field(default="admin", repr=False)
    seed: int = 0
    start: date = date(2016, 10, 25)
    days: int = 1
    per_day: int = 20
    max_duration_s: int | None = None
    timezone: str = DEFAULT_TIMEZONE
    odd_names: bool = True
    junk: bool = True
    tls_cert: Path | None = None
    tls_key: Path | None = None
    fail_rate: float = 0.0
    truncate_rate: float = 0.0
    reset_rate: float = 0.0
    delay_ms: int = 0
    # A loaded PBX: at most `load_knee` requests are worked on at once, each for `load_ms`
    # before its answer starts; the rest queue, so the answer time grows with the requests in
    # flight beyond the knee (0: off).
    load_knee: int = 0
    load_ms: int = 100
    html_errors: bool = False
    # The auto-dialer (autocalls.cgi): where call results go, and how calls turn out.
    callback_url: str | None = None
    dial_outcomes: str = DEFAULT_OUTCOMES
    dial_step_ms: int = 200
    dial_time_scale: float = 1.0
    answer_duration_s: int = 3
    son_style: str = "1"
    # Hostile lines (traversal, shell, control, look-alike, 10 kB, blank) mixed into every
    # listing, which then also starts with a BOM and has CRLF line ends (simulator/hostile.py).
    hostile_lines: int = 0
    # Serve as a minimal firmware CGI would (simulator/cgi.py): %XX-only decoding, HTTP/1.0,
    # text/html, no Content-Length, an unknown command or a wrong password answered 200.
    cgi_strict: bool = False
    # A hostile PBX (issue 11), per request like the fault rates above: a 302 to
    # `redirect_to`; a body dripped one byte every `drip_ms`; a listing followed by `bloat_mb`
    # MiB of junk `ab` lines (a download: the recording followed by as much junk).
    redirect_rate: float = 0.0
    redirect_to: str = "http://127.0.0.1:9/cgi-bin/system_cmd.cgi"
    drip_rate: float = 0.0
    drip_ms: int = 800
    bloat_rate: float = 0.0
    bloat_mb: int = 60
    # A firmware whose commands do not run: "all" answers every system_cmd.cgi command, "find"
    # only the find command, with 200 and an empty body (the shell's error went to stderr).
    empty_commands: Literal["all", "find"] | None = None

    def __post_init__(self) -> None:
        problems = self._problems()
        if problems:
            raise ValueError("invalid simulator options: " + "; ".join(problems))

    def _problems(self) -> list[str]:
        problems = []
        if not 0 <= self.port <= 65535:
            problems.append(f"port: {self.port} is not in 0..65535")
        if not self.username or not self.password:
            problems.append("username and password must not be empty")
        if self.days < 0 or self.per_day < 0:
            problems.append("days and per_day must be >= 0")
        if self.max_duration_s is not None and self.max_duration_s < 1:
            problems.append("max_duration_s must be >= 1")
        rates = {"fail_rate": self.fail_rate, "truncate_rate": self.truncate_rate}
        rates["reset_rate"] = self.reset_rate
        rates |= {"redirect_rate": self.redirect_rate, "drip_rate": self.drip_rate}
        rates["bloat_rate"] = self.bloat_rate
        problems += [f"{k}: {v} is not in 0..1" for k, v in rates.items() if not 0 <= v <= 1]
        if sum(rates.values()) > 1:
            problems.append(f"{' + '.join(rates)} must be <= 1")
        if self.delay_ms < 0 or self.drip_ms < 0 or self.bloat_mb < 0:
            problems.append("delay_ms, drip_ms and bloat_mb must be >= 0")
        if self.load_knee < 0 or self.load_ms < 0:
            problems.append("load_knee and load_ms must be >= 0")
        if self.empty_commands not in (None, "all", "find"):
            problems.append("empty_commands must be all or find")
        if self.hostile_lines < 0:
            problems.append("hostile_lines must be >= 0")
        if (self.tls_cert is None) != (self.tls_key is None):
            problems.append("tls_cert and tls_key go together")
        try:
            ZoneInfo(self.timezone)
        except (ZoneInfoNotFoundError, ValueError):
            problems.append(f"timezone: unknown zone {self.timezone!r}")
        return problems + self._dial_problems()

    def _dial_problems(self) -> list[str]:
        problems = []
        try:
            parse_outcomes(self.dial_outcomes)
        except ValueError as exc:
            problems.append(str(exc))
        if self.callback_url is not None and not re.match(r"https?://", self.callback_url):
            problems.append("callback_url must be an http(s) URL")
        if self.dial_step_ms < 0 or self.dial_time_scale < 0 or self.answer_duration_s < 1:
            problems.append("dial_step_ms, dial_time_scale >= 0 and answer_duration_s >= 1")
        if self.son_style not in SON_STYLES:
            problems.append(f"son_style must be one of {sorted(SON_STYLES)}")
        return problems

    @property
    def scheme(self) -> Literal["http", "https"]:
        """`https` when a certificate is configured."""
        return "https" if self.tls_cert else "http"

    def url(self, port: int) -> str:
        """The base URL for `port` (IPv6 hosts in brackets)."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{self.scheme}://{host}:{port}"

    def build_corpus(self) -> Corpus:
        """Return the corpus these options describe."""
        return Corpus(
            seed=self.seed,
            start=self.start,
            days=self.days,
            per_day=self.per_day,
            max_duration_s=self.max_duration_s,
            timezone=self.timezone,
            odd_names=self.odd_names,
            junk=self.junk,
        )


# -- commands --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ListFolders:
    """`list_files` on the recording directory."""


@dataclass(frozen=True)
class ListFolder:
    """`list_files` on one folder of the recording directory."""

    folder: str


@dataclass(frozen=True)
class Find:
    """`find` on the recording directory with `-name GLOB`."""

    glob: str


Command = ListFolders | ListFolder | Find


def parse_command(cmd: str) -> Command | None:
    """Return the documented command `cmd` is, exactly (no extra spaces or words), or None."""
    if cmd == LIST_FOLDERS_COMMAND:
        return ListFolders()
    if match := _LIST_FOLDER_RE.fullmatch(cmd):
        return ListFolder(match["folder"])
    if match := _FIND_RE.fullmatch(cmd):
        return Find(match["glob"])
    return None


def runs(options: SimulatorOptions, command: Command) -> bool:
    """False when `options.empty_commands` makes `command` print nothing (a dead command)."""
    if options.empty_commands == "all":
        return False
    return not (options.empty_commands == "find" and isinstance(command, Find))


def run_command(corpus: Corpus, command: Command) -> list[str]:
    """Return the lines the PBX prints for `command`."""
    if isinstance(command, ListFolders):
        return corpus.folders()
    if isinstance(command, ListFolder):
        return corpus.list_folder(command.folder)
    return corpus.find(command.glob)


# -- faults ----------------------------------------------------------------------------------------


FaultKind = Literal["fail", "truncate", "reset", "redirect", "drip", "bloat"]


@dataclass(frozen=True)
class Fault:
    """One injected failure: `kind` and its `variant`.

    fail: HTTP `500`/`503` (or a 200 HTML login page for a listing with `html_errors`);
    truncate: `length` (short body under a full Content-Length) or `chunked` (no final chunk);
    reset: abort the connection `before` the reply or `during` the body;
    redirect: `302` to `redirect_to`; drip: the body one byte at a time; bloat: the body with
    `bloat_mb` MiB of junk lines after it.
    """

    kind: FaultKind
    variant: str


class FaultPlan:
    """Decides, for the n-th faultable request, which fault (if any) fires. Repeatable per seed."""

    def __init__(self, options: SimulatorOptions) -> None:
        self._options = options
        self._count = 0

    def next(self) -> Fault | None:
        """Return the fault for the next request; each kind fires with its configured rate."""
        self._count += 1
        rng = random.Random(f"archiver-sim:{self._options.seed}:fault:{self._count}")
        u, coin = rng.random(), rng.random() < 0.5
        o = self._options
        kinds: tuple[tuple[FaultKind, float], ...] = (
            ("fail", o.fail_rate),
            ("truncate", o.truncate_rate),
            ("reset", o.reset_rate),
            ("redirect", o.redirect_rate),
            ("drip", o.drip_rate),
            ("bloat", o.bloat_rate),
        )
        for kind, rate in kinds:
            if u < rate:
                return Fault(kind, _VARIANTS[kind][coin])
            u -= rate
        return None


_VARIANTS: Final[dict[str, tuple[str, str]]] = {
    "fail": ("503", "500"),
    "truncate": ("chunked", "length"),
    "reset": ("during", "before"),
    "redirect": ("302", "302"),
    "drip": ("bytes", "bytes"),
    "bloat": ("lines", "lines"),
}


# -- the application -------------------------------------------------------------------------------

CORPUS_KEY = web.AppKey("corpus", Corpus)
OPTIONS_KEY = web.AppKey("options", SimulatorOptions)
FAULTS_KEY = web.AppKey("faults", FaultPlan)
DIALER_KEY = web.AppKey("dialer", Dialer)
# Every `filename=` that fileget.cgi was asked for (authorised requests only), in order: tests
# check that nothing but listed, valid recordings is ever requested.
REQUESTED_KEY: web.AppKey[list[str]] = web.AppKey("requested")
# Every request line as it arrived (`GET /cgi-bin/...?... HTTP/1.1`), credentials included:
# tests pin the exact bytes a client sends. Kept in memory only, never logged.
REQUEST_LINES_KEY: web.AppKey[list[str]] = web.AppKey("request_lines")


@web.middleware
async def _record_request_line(request: web.Request, handler: Handler) -> web.StreamResponse:
    version = f"HTTP/{request.version.major}.{request.version.minor}"
    request.app[REQUEST_LINES_KEY].append(f"{request.method} {request.raw_path} {version}")
    return await handler(request)


@dataclass
class Concurrency:
    """Requests being answered now, and the most ever answered at once (the PBX is one small
    box: tests check that every worker together keeps to its request limit)."""

    now: int = 0
    peak: int = 0


CONCURRENCY_KEY = web.AppKey("concurrency", Concurrency)


@web.middleware
async def _count_concurrency(request: web.Request, handler: Handler) -> web.StreamResponse:
    seen = request.app[CONCURRENCY_KEY]
    seen.now += 1
    seen.peak = max(seen.peak, seen.now)
    try:
        return await handler(request)
    finally:
        seen.now -= 1


@dataclass
class LoadedPbx:
    """The `--load-knee` model: `knee` requests worked on at once, the rest queued (FIFO).
    `in_flight` and `peak` count every request inside, queued or worked on."""

    knee: int
    in_flight: int = 0
    peak: int = 0
    _workers: asyncio.Semaphore | None = None

    def workers(self) -> asyncio.Semaphore:
        if self._workers is None:  # made on first use, inside the serving loop
            self._workers = asyncio.Semaphore(max(1, self.knee))
        return self._workers


LOAD_KEY = web.AppKey("load", LoadedPbx)


async def _work_under_load(load: LoadedPbx, load_ms: int) -> None:
    """Queue for one of the `knee` workers, then work `load_ms` on the request."""
    load.in_flight += 1
    load.peak = max(load.peak, load.in_flight)
    try:
        async with load.workers():
            await asyncio.sleep(load_ms / 1000)
    finally:
        load.in_flight -= 1


def build_app(options: SimulatorOptions) -> web.Application:
    """Return the simulator's application; its corpus (`app[CORPUS_KEY]`) is built here, once."""
    app = web.Application(middlewares=[_record_request_line, _count_concurrency])
    app[CONCURRENCY_KEY] = Concurrency()
    app[OPTIONS_KEY] = options
    app[REQUEST_LINES_KEY] = []
    app[CORPUS_KEY] = options.build_corpus()
    app[FAULTS_KEY] = FaultPlan(options)
    app[LOAD_KEY] = LoadedPbx(options.load_knee)
    app[REQUESTED_KEY] = []
    app.router.add_get("/cgi-bin/system_cmd.cgi", _system_cmd)
    app.router.add_get("/cgi-bin/fileget.cgi", _fileget)
    app.router.add_get("/_sim/manifest", _manifest)
    app[DIALER_KEY] = Dialer(
        corpus=app[CORPUS_KEY],
        seed=options.seed,
        callback_url=options.callback_url,
        outcomes=parse_outcomes(options.dial_outcomes),
        step_ms=options.dial_step_ms,
        time_scale=options.dial_time_scale,
        answer_duration_s=options.answer_duration_s,
        son_style=options.son_style,
    )
    app.router.add_get("/cgi-bin/autocalls.cgi", _autocalls)
    app.on_cleanup.append(_close_dialer)
    return app


async def _close_dialer(app: web.Application) -> None:
    await app[DIALER_KEY].close()


async def _autocalls(request: web.Request) -> web.Response:
    if not _authorized(request):
        return _unauthorized()
    query = {
        name: request.query.getall(name)
        for name in set(request.query.keys()) - {"username", "password"}
    }
    reason = validate_autocall(query)
    if reason is not None:
        return web.Response(status=400, text=f"400: Bad Request: {reason}\n", content_type=_TEXT)
    one = {name: values[0] for name, values in query.items()}
    request.app[DIALER_KEY].start(one["number"], int(one["mr"]), int(one["rt"]), one["datetime"])
    return web.Response(text="OK\n", content_type=_TEXT)


def _authorized(request: web.Request) -> bool:
    options = request.app[OPTIONS_KEY]
    username = request.query.get("username", "").encode()
    password = request.query.get("password", "").encode()
    # Both comparisons always run, in constant time, so timing tells nothing about either.
    user_ok = hmac.compare_digest(username, options.username.encode())
    password_ok = hmac.compare_digest(password, options.password.encode())
    return user_ok and password_ok


def _unauthorized() -> web.Response:
    return web.Response(status=401, text="401: Unauthorized\n", content_type=_TEXT)


async def _system_cmd(request: web.Request) -> web.StreamResponse:
    if not _authorized(request):
        return _unauthorized()
    commands = request.query.getall("cmd", [])
    command = parse_command(commands[0]) if len(commands) == 1 else None
    if command is None:
        return web.Response(status=403, text="403: Forbidden\n", content_type=_TEXT)
    options = request.app[OPTIONS_KEY]
    if not runs(options, command):
        return web.Response(text="", content_type=_TEXT)
    lines = run_command(request.app[CORPUS_KEY], command)
    if options.hostile_lines:
        body = hostile_body(lines, options.hostile_lines, options.seed)
    else:
        body = "".join(f"{line}\n" for line in lines).encode()
    return await _reply(request, [body], len(body), _TEXT, listing=True)


async def _fileget(request: web.Request) -> web.StreamResponse:
    if not _authorized(request):
        return _unauthorized()
    if request.query.get("action") != "rcdownload":
        return web.Response(status=400, text="400: Bad Request\n", content_type=_TEXT)
    corpus = request.app[CORPUS_KEY]
    request.app[REQUESTED_KEY].append(request.query.get("filename", ""))
    rec = corpus.by_relative_path(request.query.get("filename", ""))
    if rec is None:
        return web.Response(status=404, text="404: Not Found\n", content_type=_TEXT)
    stream = corpus.audio_stream(rec)
    return await _reply(request, stream.chunks(), stream.size_bytes, "application/octet-stream")


async def _manifest(request: web.Request) -> web.StreamResponse:
    if not _authorized(request):
        return _unauthorized()
    return web.json_response(request.app[CORPUS_KEY].manifest())


async def _reply(
    request: web.Request,
    chunks: Iterable[bytes],
    size: int,
    content_type: str,
    *,
    listing: bool = False,
) -> web.StreamResponse:
    """Send `size` bytes of `chunks`, after the configured delay and through the next fault."""
    options = request.app[OPTIONS_KEY]
    if options.delay_ms:
        await asyncio.sleep(options.delay_ms / 1000)
    if options.load_knee:
        await _work_under_load(request.app[LOAD_KEY], options.load_ms)
    fault = request.app[FAULTS_KEY].next()
    if fault is None:
        return await _stream(request, chunks, size, content_type)
    _log.info("injecting fault %s/%s on %s", fault.kind, fault.variant, request.path)
    if fault.kind == "redirect":
        return web.Response(status=302, headers={"Location": options.redirect_to})
    if fault.kind == "drip":
        return await _drip(request, chunks, size, content_type, options.drip_ms / 1000)
    if fault.kind == "bloat":
        junk = _bloat_chunks(options.bloat_mb)
        total = size + len(_BLOAT_CHUNK) * options.bloat_mb
        return await _stream(request, itertools.chain(chunks, junk), total, content_type)
    if fault.kind == "fail":
        if listing and options.html_errors:
            return web.Response(text=LOGIN_PAGE, content_type="text/html")
        status = int(fault.variant)
        return web.Response(status=status, text=f"{status}: Server Error\n", content_type=_TEXT)
    if fault == Fault("reset", "before"):
        _drop(request, reset=True)
        return web.Response()  # never sent: aiohttp finds the transport closed and moves on
    return await _stream(request, chunks, size, content_type, fault=fault)


async def _stream(
    request: web.Request,
    chunks: Iterable[bytes],
    size: int,
    content_type: str,
    fault: Fault | None = None,
) -> web.StreamResponse:
    """Send the body; with a truncate or reset `fault`, stop halfway and drop the connection."""
    response = web.StreamResponse(headers={"Content-Type": content_type})
    # A zero-length body cannot be cut short under a Content-Length: go chunked instead.
    if fault is not None and (fault.variant == "chunked" or size == 0):
        response.enable_chunked_encoding()
    else:
        response.content_length = size
    try:
        await response.prepare(request)
        await _write_body(response, chunks, size if fault is None else size // 2)
        if fault is None:
            await response.write_eof()
    except ConnectionError:
        return response  # the client went away: nothing to report to it, nothing to log
    if fault is not None:
        _drop(request, reset=fault.kind == "reset")
    return response


# One MiB (less one byte) of short junk lines: what a PBX with a broken `find` could send.
_BLOAT_CHUNK: Final = b"ab\n" * (1024 * 1024 // 3)


def _bloat_chunks(mib: int) -> Iterable[bytes]:
    return itertools.repeat(_BLOAT_CHUNK, mib)


async def _drip(
    request: web.Request, chunks: Iterable[bytes], size: int, content_type: str, every_s: float
) -> web.StreamResponse:
    """Send the body one byte every `every_s`, as a slow or hostile server would, until done
    or the client gives up."""
    response = web.StreamResponse(headers={"Content-Type": content_type})
    response.content_length = size
    try:
        await response.prepare(request)
        for chunk in chunks:
            for index in range(len(chunk)):
                await response.write(chunk[index : index + 1])
                await asyncio.sleep(every_s)
        await response.write_eof()
    except ConnectionError:
        pass  # the client gave up, as it should
    return response


async def _write_body(response: web.StreamResponse, chunks: Iterable[bytes], limit: int) -> None:
    """Write the first `limit` bytes of `chunks`."""
    sent = 0
    for chunk in chunks:
        piece = chunk[: limit - sent]
        if piece:
            await response.write(piece)
        sent += len(piece)
        if sent >= limit:
            return


def _drop(request: web.Request, *, reset: bool) -> None:
    """Close the connection after what was written: with FIN (truncate) or RST (reset)."""
    transport = request.transport
    if transport is None:
        return
    sock = transport.get_extra_info("socket")
    if reset and sock is not None:
        # Linger 0 makes the close send RST instead of FIN, as a crashed peer or proxy would.
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    transport.close()


class _AccessLogger(AbstractAccessLogger):
    """Logs method, path and status only: the query string carries the password."""

    def log(self, request: web.BaseRequest, response: web.StreamResponse, time: float) -> None:
        self.logger.info(
            "%s %s %s %.1fms", request.method, request.path, response.status, time * 1000
        )

    @property
    def enabled(self) -> bool:
        """Log only when someone listens at INFO, to keep the hot path free otherwise."""
        return self.logger.isEnabledFor(logging.INFO)


# -- running ---------------------------------------------------------------------------------------


def _ssl_context(options: SimulatorOptions) -> ssl.SSLContext | None:
    if options.tls_cert is None or options.tls_key is None:
        return None
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(options.tls_cert, options.tls_key)
    return context


async def start_simulator(options: SimulatorOptions) -> tuple[web.AppRunner, int]:
    """Start serving `options` on the running loop; return the runner and the bound port.

    Port 0 picks a free one. The caller owns the runner: `await runner.cleanup()` stops it.
    """
    runner = web.AppRunner(
        build_app(options),
        access_log_class=_AccessLogger,
        access_log=logging.getLogger("archiver.lab.simulator.access"),
        shutdown_timeout=2.0,
    )
    if options.cgi_strict:
        return await _start_strict(runner, options)
    await runner.setup()
    try:
        site = web.TCPSite(runner, options.host, options.port, ssl_context=_ssl_context(options))
        await site.start()
    except BaseException:
        await runner.cleanup()
        raise
    port: int = runner.addresses[0][1]
    return runner, port


async def _start_strict(
    runner: web.AppRunner, options: SimulatorOptions
) -> tuple[web.AppRunner, int]:
    """Serve `runner`'s app through the strict-CGI front; the runner's cleanup stops it."""
    from archiver.lab.simulator.cgi import StrictCgiServer

    front = StrictCgiServer(runner.app)

    async def close_front(app: web.Application) -> None:
        await front.close()

    runner.app.on_cleanup.append(close_front)
    await runner.setup()
    try:
        port = await front.start(options.host, options.port, _ssl_context(options))
    except BaseException:
        await runner.cleanup()
        raise
    return runner, port


class SimulatorThread:
    """Runs the simulator on its own event loop in a daemon thread, for `with` blocks.

    Entering starts it (and re-raises a start-up error such as a port in use); leaving stops it.
    """

    def __init__(self, options: SimulatorOptions) -> None:
        self.options = options
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._run, name="pbx-simulator", daemon=True)
        self._started = threading.Event()
        self._runner: web.AppRunner | None = None
        self._error: Exception | None = None
        self._port = 0

    @property
    def port(self) -> int:
        """The port the simulator listens on."""
        return self._port

    @property
    def base_url(self) -> str:
        """`http(s)://host:port`, with no trailing slash."""
        return self.options.url(self._port)

    @property
    def dialer(self) -> Dialer:
        """The auto-dialer (its `calls` say what each autocall did)."""
        if self._runner is None:
            raise RuntimeError("the simulator is not running")
        return self._runner.app[DIALER_KEY]

    @property
    def request_lines(self) -> list[str]:
        """A copy of every request line received so far (credentials included)."""
        if self._runner is None:
            raise RuntimeError("the simulator is not running")
        return self._runner.app[REQUEST_LINES_KEY].copy()

    @property
    def peak_requests(self) -> int:
        """The most requests it was ever answering at once."""
        if self._runner is None:
            raise RuntimeError("the simulator is not running")
        return self._runner.app[CONCURRENCY_KEY].peak

    @property
    def requested(self) -> list[str]:
        """A copy of every `filename=` fileget.cgi was asked for so far."""
        if self._runner is None:
            raise RuntimeError("the simulator is not running")
        return self._runner.app[REQUESTED_KEY].copy()

    @property
    def corpus(self) -> Corpus:
        """The served corpus (its `add()` is safe to call from this thread)."""
        if self._runner is None:
            raise RuntimeError("the simulator is not running")
        return self._runner.app[CORPUS_KEY]

    def __enter__(self) -> SimulatorThread:
        self._thread.start()
        self._started.wait()
        if self._error is not None:
            self._thread.join()
            raise self._error
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=10)

    def _run(self) -> None:
        asyncio.set_event_loop(self._loop)
        try:
            self._runner, self._port = self._loop.run_until_complete(start_simulator(self.options))
        except Exception as exc:  # handed to the thread that entered the `with`
            self._error = exc
            self._started.set()
            self._loop.close()
            return
        self._started.set()
        self._loop.run_forever()
        self._loop.run_until_complete(self._runner.cleanup())
        self._loop.close()


# -- command line ----------------------------------------------------------------------------------


def _listen_address(text: str) -> tuple[str, int]:
    host, sep, port = text.rpartition(":")
    if not sep or not host or not port.isdigit() or int(port) > 65535:
        raise argparse.ArgumentTypeError(f"expected HOST:PORT, got {text!r}")
    return host.strip("[]"), int(port)


def _iso_date(text: str) -> date:
    try:
        return date.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected YYYY-MM-DD, got {text!r}") from None


def _rate(text: str) -> float:
    value = float(text)
    if not 0 <= value <= 1:
        raise argparse.ArgumentTypeError(f"expected a rate in 0..1, got {text!r}")
    return value


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the `archiver simulate` options to `parser`."""
    parser.add_argument(
        "--listen",
        type=_listen_address,
        default=("127.0.0.1", 9999),
        metavar="HOST:PORT",
        help="address to serve on (default 127.0.0.1:9999)",
    )
    parser.add_argument("--username", required=True)
    parser.add_argument("--password", required=True)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--start",
        type=_iso_date,
        default=date(2016, 10, 25),
        metavar="YYYY-MM-DD",
        help="first day of recordings (default 2016-10-25)",
    )
    parser.add_argument("--days", type=int, default=1)
    parser.add_argument("--per-day", type=int, default=20)
    parser.add_argument("--max-duration-s", type=int, default=None)
    parser.add_argument("--timezone", default=DEFAULT_TIMEZONE, help="the PBX's local time zone")
    parser.add_argument("--no-odd-names", action="store_true", help="omit the odd-but-valid names")
    parser.add_argument("--no-junk", action="store_true", help="omit the non-recording files")
    parser.add_argument("--tls-cert", type=Path, default=None, metavar="FILE")
    parser.add_argument("--tls-key", type=Path, default=None, metavar="FILE")
    parser.add_argument("--fail-rate", type=_rate, default=0.0, help="share of HTTP 500/503")
    parser.add_argument("--truncate-rate", type=_rate, default=0.0, help="share of short bodies")
    parser.add_argument(
        "--reset-rate", type=_rate, default=0.0, help="share of dropped connections"
    )
    parser.add_argument("--delay-ms", type=int, default=0, help="delay before every reply")
    parser.add_argument(
        "--load-knee",
        type=int,
        default=0,
        metavar="N",
        help="a loaded PBX: N requests are worked on at once (--load-ms each), the rest queue, "
        "so the answer time grows with the requests in flight beyond N (default 0: off)",
    )
    parser.add_argument("--load-ms", type=int, default=100, help="work per request (--load-knee)")
    parser.add_argument(
        "--hostile-lines",
        type=int,
        default=0,
        metavar="N",
        help="mix N hostile lines (traversal, shell, control, look-alike, 10 kB, blank) into "
        "every listing, with a BOM and CRLF line ends",
    )
    parser.add_argument("--redirect-rate", type=_rate, default=0.0, help="share of 302s")
    parser.add_argument("--redirect-to", default=SimulatorOptions.redirect_to, metavar="URL")
    parser.add_argument("--drip-rate", type=_rate, default=0.0, help="share of dripped replies")
    parser.add_argument("--drip-ms", type=int, default=800, help="between two dripped bytes")
    parser.add_argument(
        "--bloat-rate", type=_rate, default=0.0, help="share of listings with --bloat-mb of junk"
    )
    parser.add_argument("--bloat-mb", type=int, default=60)
    parser.add_argument(
        "--html-errors",
        action="store_true",
        help="failed listings answer 200 with an HTML login page",
    )
    parser.add_argument(
        "--cgi-strict",
        action="store_true",
        help="answer as a minimal firmware CGI: %%XX-only query decoding, HTTP/1.0 text/html "
        "without Content-Length, unknown commands and wrong passwords answered 200",
    )
    parser.add_argument(
        "--empty-commands",
        choices=["all", "find"],
        default=None,
        help="commands that answer 200 with an empty body, as on a firmware that cannot run them",
    )
    parser.add_argument("--callback-url", metavar="URL", help="where autocall results are sent")
    parser.add_argument("--dial-outcomes", default=DEFAULT_OUTCOMES, metavar="STATUS=W,...",
                        help=f"mix of dial results (default {DEFAULT_OUTCOMES})")  # fmt: skip
    parser.add_argument("--dial-step-ms", type=int, default=200, help="between callbacks")
    parser.add_argument("--dial-time-scale", type=float, default=1.0,
                        help="scales rt and answered calls' length (0.01: 100x)")  # fmt: skip
    parser.add_argument("--answer-duration-s", type=int, default=3, help="answered calls' length")
    parser.add_argument("--son-style", choices=sorted(SON_STYLES), default="1")


def options_from_args(args: argparse.Namespace) -> SimulatorOptions:
    """Return the options `add_arguments` parsed. Raise ValueError if they are inconsistent."""
    host, port = args.listen
    return SimulatorOptions(
        host=host,
        port=port,
        username=args.username,
        password=args.password,
        seed=args.seed,
        start=args.start,
        days=args.days,
        per_day=args.per_day,
        max_duration_s=args.max_duration_s,
        timezone=args.timezone,
        odd_names=not args.no_odd_names,
        junk=not args.no_junk,
        tls_cert=args.tls_cert,
        tls_key=args.tls_key,
        fail_rate=args.fail_rate,
        truncate_rate=args.truncate_rate,
        reset_rate=args.reset_rate,
        delay_ms=args.delay_ms,
        load_knee=args.load_knee,
        load_ms=args.load_ms,
        html_errors=args.html_errors,
        callback_url=args.callback_url,
        dial_outcomes=args.dial_outcomes,
        dial_step_ms=args.dial_step_ms,
        dial_time_scale=args.dial_time_scale,
        answer_duration_s=args.answer_duration_s,
        son_style=args.son_style,
        hostile_lines=args.hostile_lines,
        cgi_strict=args.cgi_strict,
        redirect_rate=args.redirect_rate,
        redirect_to=args.redirect_to,
        drip_rate=args.drip_rate,
        drip_ms=args.drip_ms,
        bloat_rate=args.bloat_rate,
        bloat_mb=args.bloat_mb,
        empty_commands=args.empty_commands,
    )


def run_from_args(args: argparse.Namespace) -> int:
    """Serve until SIGTERM or SIGINT; return the exit code (2 for bad options, 1 if it can't bind).

    Prints one line with the URL (never the password) to stdout once listening.
    """
    try:
        options = options_from_args(args)
    except ValueError as exc:
        print(f"archiver simulate: {exc}", file=sys.stderr)
        return 2
    try:
        asyncio.run(_serve_until_signal(options))
    except (OSError, ssl.SSLError) as exc:
        print(f"archiver simulate: cannot start: {exc}", file=sys.stderr)
        return 1
    return 0


async def _serve_until_signal(options: SimulatorOptions) -> None:
    runner, port = await start_simulator(options)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    files = len(runner.app[CORPUS_KEY].recordings())
    print(f"PBX simulator listening on {options.url(port)} ({files} files)", flush=True)
    try:
        await stop.wait()
    finally:
        await runner.cleanup()
