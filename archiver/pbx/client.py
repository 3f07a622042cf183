"""The PBX client: the two documented listing commands and the download, over aiohttp.

`system_cmd.cgi` runs its `cmd` argument as a shell command on the PBX, so this module only ever
builds the two documented command shapes, with a folder or pattern that passed a strict allow-list
here. Credentials travel in the query string: no URL is ever logged or put into an exception; errors
carry a short reason and the endpoint's name instead.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import os
import re
import ssl
from collections.abc import AsyncIterator, Callable, Mapping
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from typing import Final

import aiofiles
import aiofiles.os
import aiohttp
import structlog
from aiohttp import ClientResponse
from yarl import URL

from archiver.config import PbxConfig
from archiver.errors import ArchiverError, Kind
from archiver.logs import register_secret
from archiver.names import RECORDING_ROOT, Recording
from archiver.pbx.listing import (
    HTML_MARKERS,
    LineCollector,
    Listing,
    ListingRefused,
    is_login_page,
)
from archiver.pbx.pressure import AdaptiveLimit, Bandwidth
from archiver.pbx.query import request_target
from archiver.pbx.transfer import TooSlow, TransferFloor, chunks

# The largest piece of a body paced through the bandwidth cap at once.
_CHUNK_BYTES: Final = 256 * 1024

__all__ = [
    "Download",
    "Listing",
    "PbxAuthError",
    "PbxClient",
    "PbxError",
    "PbxLoginPage",
    "date_pattern",
    "find_command",
    "list_files_command",
    "max_download_bytes",
    "split_listing",
    "tls_setting",
]

log = structlog.get_logger(__name__)

_LIST_FILES: Final = "sh /etc/scripts/shell_scripts.sh list_files "
_RECORDING_DIR: Final = RECORDING_ROOT.rstrip("/")
# A find pattern: the characters of a recording name, plus '*' as in the documented examples.
_PATTERN_RE: Final = re.compile(r"[A-Za-z0-9+*][A-Za-z0-9+*.-]{0,63}")
_FOLDER_RE: Final = re.compile(r"[A-Za-z0-9][A-Za-z0-9_+-]{0,63}")
_MAX_AUTOCALL_REPLY_BYTES: Final = 64 * 1024
# The most a second of audio may take per extension (pbx-api.md): raw GSM 1,650 B/s; GSM-in-WAV
# 1,625; a `.wav` is usually 8 kHz 16-bit PCM (16,000 B/s), allowed twice that so a 16 kHz
# (wideband) or stereo recording still fits.
_BYTES_PER_AUDIO_S: Final = {"gsm": 1650, "wav49": 1625, "WAV": 32_000, "wav": 32_000}
# The name's duration is whole seconds and may count from the answer while the recording runs
# from the dial: a quarter more plus two minutes, and room for headers.
_DURATION_SLACK_RATIO: Final = 1.25
_DURATION_SLACK_S: Final = 120
_HEADER_SLACK_BYTES: Final = 64 * 1024


class PbxError(ArchiverError):
    """The PBX did not give a usable answer (see `ArchiverError` for `reason`, `transient` and
    `kind`)."""


class PbxAuthError(PbxError):
    """The PBX refused our credentials (the message never contains them)."""

    def __init__(self, pbx: str) -> None:
        super().__init__(
            f"PBX {pbx!r} refused the username/password (HTTP 401/403)",
            transient=False,
            kind="refused",
        )


class PbxLoginPage(PbxError):
    """The PBX answered a listing with its web login page (status 200): a firmware CGI's way of
    refusing the username/password, or a session glitch. Transient, as the latter would be;
    `archiver doctor` names it as refused credentials."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason, transient=True, kind="html_page")


def _listing_error(where: str, error: ListingRefused) -> PbxError:
    reason = f"{where}{error.reason}"
    if error.login_page:
        return PbxLoginPage(reason)
    return PbxError(reason, transient=error.transient, kind=error.kind)


def find_command(pattern: str) -> str:
    """Return the documented search command for `pattern`. Raise ValueError if the pattern is not
    made of name characters and '*' only."""
    if _PATTERN_RE.fullmatch(pattern) is None:
        raise ValueError("find pattern must be 1-64 of A-Z a-z 0-9 + * . - (not starting with . -)")
    return f"find {RECORDING_ROOT} -name *{pattern}*"


def list_files_command(folder: str | None = None) -> str:
    """Return the documented listing command: the folders, or the files of one trunk folder.
    Raise ValueError if `folder` is not a plain trunk folder name."""
    if folder is None:
        return _LIST_FILES + _RECORDING_DIR
    if _FOLDER_RE.fullmatch(folder) is None:
        raise ValueError("folder must be a trunk folder name (letters, digits, _ + -)")
    return f"{_LIST_FILES}{_RECORDING_DIR}/{folder}"


def date_pattern(day: date) -> str:
    """The date prefix the daemon polls by: every recording of `day` (PBX local date)."""
    return f"{day:%Y%m%d}-"


@dataclass(frozen=True, slots=True)
class Download:
    """A downloaded file. `delimited_by_close`: the PBX sent no Content-Length (a firmware CGI
    marks the end of the body by closing the connection), so a cut connection looks complete
    and the caller must check the audio's own length instead."""

    path: Path
    size_bytes: int
    sha256: str
    delimited_by_close: bool = False


def tls_setting(cfg: PbxConfig) -> ssl.SSLContext | aiohttp.Fingerprint | bool:
    """What aiohttp's `ssl=` gets: a CA-file context, a pinned fingerprint, no checks, or the
    default verification (True)."""
    if not cfg.url.startswith("https://"):
        return True
    if cfg.tls_fingerprint is not None:
        return aiohttp.Fingerprint(bytes.fromhex(cfg.tls_fingerprint))
    if not cfg.verify_tls:
        return False
    if cfg.ca_file is not None:
        return ssl.create_default_context(cafile=str(cfg.ca_file))
    return True


def split_listing(body: bytes) -> Listing:
    """Given a whole listing body, return its lines (see `LineCollector`). Raise PbxError if
    it is an HTML page or over the caps."""
    collector = LineCollector()
    try:
        collector.feed(body)
        return collector.finish()
    except ListingRefused as error:
        raise _listing_error("", error) from None


def max_download_bytes(rec: Recording) -> int:
    """The most bytes `rec` may have: its format's bytes per second times its name's duration,
    with slack (see `_BYTES_PER_AUDIO_S`). A bigger body is not that recording."""
    audio_s = rec.duration_s * _DURATION_SLACK_RATIO + _DURATION_SLACK_S
    return int(_BYTES_PER_AUDIO_S[rec.extension] * audio_s) + _HEADER_SLACK_BYTES


@dataclass
class PbxClient:
    """One PBX's HTTP API. Create inside a running loop; `close()` when done."""

    cfg: PbxConfig
    password: str = field(repr=False)
    _session: aiohttp.ClientSession | None = field(default=None, init=False, repr=False)
    # Entered inside our own limit around every request: the PBX's request slots shared with
    # other workers (`State.pbx_gate`), or None when this process is the only one.
    shared_gate: Callable[[], AbstractAsyncContextManager[object]] | None = field(
        default=None, repr=False
    )

    def __post_init__(self) -> None:
        # One of each per PBX, shared by every request this client makes: the live poll's and a
        # backfill's listings and downloads (archiver/pbx/pressure.py).
        self.limit = AdaptiveLimit(self.cfg.max_concurrent_requests)
        if not self.cfg.adaptive_concurrency:
            self.limit.freeze()
        self.bandwidth = Bandwidth(self.cfg.max_download_kbps, max_chunk_bytes=_CHUNK_BYTES)
        # Every URL this client builds carries the password: scrub it from every log line.
        register_secret(self.password)
        if self.cfg.cleartext_remote:
            log.warning(
                "pbx_password_in_cleartext",
                pbx=self.name,
                hint="the url is http:// to another host: use https:// (with ca_file or "
                "tls_fingerprint for a self-signed certificate)",
            )

    @property
    def name(self) -> str:
        return self.cfg.name

    def _client(self) -> aiohttp.ClientSession:
        if self._session is None:
            timeout = aiohttp.ClientTimeout(
                total=None, connect=30, sock_read=self.cfg.request_timeout_s
            )
            connector = aiohttp.TCPConnector(
                ssl=tls_setting(self.cfg),
                limit=self.cfg.max_concurrent_requests,
                socket_factory=self.bandwidth.socket_factory(),
            )
            self._session = aiohttp.ClientSession(
                base_url=self.cfg.url,
                timeout=timeout,
                connector=connector,
                raise_for_status=False,
                # Under a cap, little is buffered ahead of what the cap lets us read.
                read_bufsize=self.bandwidth.read_buffer_bytes,
            )
        return self._session

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    @contextlib.asynccontextmanager
    async def _get(
        self, path: str, what: str, extra_s: float = 0.0, /, **values: str
    ) -> AsyncIterator[ClientResponse]:
        """GET `path` with `values` and our credentials, within the adaptive limit of requests
        in flight (at most `max_concurrent_requests`; the time to the response headers feeds
        it), all of it (body included) within `request_deadline_s` + `extra_s` once it may
        start; a non-200 status, a redirect, a missed deadline, a body below the minimum rate
        and every aiohttp error become a sanitised PbxError. The query string is built by
        `archiver.pbx.query` (exactly as the document writes it) and handed to aiohttp as
        already encoded, so it reaches the wire unchanged."""
        params = {**values, "username": self.cfg.username, "password": self.password}
        target = URL(request_target(path, params.items()), encoded=True)
        deadline_s = self.cfg.request_deadline_s + extra_s
        shared = self.shared_gate() if self.shared_gate is not None else contextlib.nullcontext()
        async with self.limit.slot(what) as answer, shared:
            answer.sending()  # a wait for a slot shared with other workers is not answer time
            try:
                async with (
                    asyncio.timeout(deadline_s) as deadline,
                    self._guard(what),
                    # Never follow a redirect: it could send the password to another host, or
                    # from https to http where the certificate pin no longer applies.
                    self._client().get(target, allow_redirects=False) as response,
                ):
                    answer.answered()
                    self._check_status(response.status, what)
                    yield response
            except TimeoutError:
                if not deadline.expired():
                    raise
                reason = f"{what}: PBX {self.name!r}: no complete answer within {deadline_s:g} s"
                raise PbxError(reason, transient=True, kind="timeout") from None

    async def _chunks(self, response: ClientResponse) -> AsyncIterator[bytes]:
        """The body's chunks at no less than the minimum transfer rate, each one waiting for its
        share of the PBX's bandwidth cap (the one place every body is read)."""
        floor = TransferFloor(self.cfg.min_transfer_bytes_per_s, self.cfg.transfer_window_s)
        async for chunk in chunks(response, floor):
            await self.bandwidth.take(len(chunk))
            yield chunk

    async def find(self, pattern: str) -> Listing:
        """Return the paths `find` lists for `pattern` (see `find_command`)."""
        return await self._listing(find_command(pattern))

    async def list_folders(self) -> Listing:
        return await self._listing(list_files_command())

    async def list_files(self, folder: str) -> Listing:
        return await self._listing(list_files_command(folder))

    async def place_call(self, params: Mapping[str, str]) -> str:
        """Ask the PBX to dial (autocalls.cgi with the query `params`, validated by the caller:
        `archiver.calls.autocall.AutocallRequest.params()`) and return its reply, made printable and
        cut to 200 characters (the reply's format is undocumented). Raise PbxError or
        PbxAuthError. An HTML login page (a session that expired, answered with 200) is a
        refusal; any other HTML page is returned as `(HTML page)`: it may well be the PBX's
        way of saying yes, and calling a placed call refused would lose its callbacks."""
        async with self._get("/cgi-bin/autocalls.cgi", "autocall", **params) as response:
            body = await self._read_bounded(response, _MAX_AUTOCALL_REPLY_BYTES)
        head = body[:4096].lower()
        if head.lstrip().startswith(HTML_MARKERS):
            if is_login_page(body):
                raise PbxError(
                    "autocall: PBX answered with its login page", transient=False, kind="refused"
                )
            return "(HTML page)"
        text = body.decode("utf-8", errors="replace").strip()
        return ascii(text[:200])[1:-1]

    async def _listing(self, command: str) -> Listing:
        """Stream the listing into lines within the caps of `archiver.pbx.listing`: a hostile
        body is refused after its first lines over a cap, never held whole."""
        collector = LineCollector()
        async with self._get("/cgi-bin/system_cmd.cgi", "listing", cmd=command) as response:
            async for chunk in self._chunks(response):
                collector.feed(chunk)
            # Every line the shell prints ends with a newline: without a Content-Length, a body
            # that stops mid-line is a connection closed early, not a shorter listing.
            return collector.finish(require_final_newline=_delimited_by_close(response))

    async def _read_bounded(self, response: ClientResponse, max_bytes: int) -> bytes:
        body = bytearray()
        async for chunk in self._chunks(response):
            body += chunk
            if len(body) > max_bytes:
                raise PbxError(
                    f"reply larger than {max_bytes} bytes", transient=False, kind="too_large"
                )
        return bytes(body)

    async def download(self, rec: Recording, dest: Path) -> Download:
        """Stream `rec` into `dest` (via `dest.part`, renamed when complete) and return its size
        and sha256. A body shorter than its Content-Length, an HTML page or an HTTP error raises
        PbxError and leaves no file behind."""
        partial = dest.with_name(dest.name + ".part")
        max_bytes = max_download_bytes(rec)
        # However big the file may be, it must come at least at the minimum rate.
        extra_s = max_bytes / self.cfg.min_transfer_bytes_per_s
        try:
            async with self._get(
                "/cgi-bin/fileget.cgi",
                "download",
                extra_s,
                action="rcdownload",
                filename=rec.relative_path,
            ) as response:
                size, digest = await _stream_to_file(
                    self._chunks(response), partial, response.content_length, max_bytes, rec
                )
                delimited = _delimited_by_close(response)
            await aiofiles.os.replace(partial, dest)
        except BaseException:
            await _remove_quietly(partial)
            raise
        return Download(dest, size, digest, delimited_by_close=delimited)

    def _check_status(self, status: int, what: str) -> None:
        if status in (401, 403):
            raise PbxAuthError(self.name)
        if 300 <= status < 400:
            raise PbxError(
                f"{what}: PBX {self.name!r} answered a redirect (HTTP {status}); redirects from "
                "a PBX are never followed (check the url setting)",
                transient=False,
                kind="http_status",
            )
        if status == 404:
            raise PbxError(
                f"{what}: PBX {self.name!r} answered 404 (gone?)", transient=False, kind="not_found"
            )
        if status != 200:
            kind: Kind = "http_5xx" if status >= 500 else "http_status"
            raise PbxError(
                f"{what}: PBX {self.name!r} answered HTTP {status}", transient=True, kind=kind
            )

    def _guard(self, what: str) -> _ErrorGuard:
        return _ErrorGuard(self.name, what)


class _ErrorGuard:
    """Turn aiohttp's exceptions, whose text includes the URL (and so the password), into a
    PbxError that names the PBX only. `from None` drops the original from any traceback."""

    def __init__(self, pbx: str, what: str) -> None:
        self._pbx = pbx
        self._what = what

    async def __aenter__(self) -> None:
        return None

    async def __aexit__(self, cls: type[BaseException] | None, error: object, tb: object) -> None:
        where = f"{self._what}: PBX {self._pbx!r}"
        if isinstance(error, TooSlow):
            raise PbxError(f"{where}: {error.reason}", transient=True, kind="timeout") from None
        if isinstance(error, ListingRefused):
            raise _listing_error(f"{where}: ", error) from None
        if cls is None or not issubclass(cls, aiohttp.ClientError | asyncio.TimeoutError):
            return
        reason, kind = _describe(error)
        # A certificate that fails its check fails the same way next time: no retries.
        transient = not isinstance(error, _CERTIFICATE_ERRORS)
        raise PbxError(
            f"{self._what}: PBX {self._pbx!r}: {reason}", transient=transient, kind=kind
        ) from None


_CERTIFICATE_ERRORS = (aiohttp.ServerFingerprintMismatch, aiohttp.ClientConnectorCertificateError)


def _describe(error: object) -> tuple[str, Kind]:
    """A reason (no URL) and the kind of an aiohttp or timeout error."""
    if isinstance(error, aiohttp.ServerFingerprintMismatch):
        return "TLS certificate does not match the configured tls_fingerprint", "tls"
    if isinstance(error, aiohttp.ClientConnectorCertificateError):
        return "TLS certificate not trusted (set ca_file or tls_fingerprint)", "tls"
    if isinstance(error, aiohttp.ClientPayloadError):
        return "response body cut short", "truncated"
    if isinstance(error, aiohttp.ServerDisconnectedError):
        return "connection closed by the PBX", "disconnected"
    if isinstance(error, aiohttp.ClientConnectorError):
        cause = error.os_error.strerror or type(error.os_error).__name__
        return f"cannot connect ({cause})", "connect"
    if isinstance(error, asyncio.TimeoutError | aiohttp.ServerTimeoutError):
        return "timed out", "timeout"
    if isinstance(error, aiohttp.ClientOSError):
        return f"connection error ({error.strerror or 'reset'})", "connection"
    return type(error).__name__, "other"


async def _stream_to_file(
    body: AsyncIterator[bytes], path: Path, expected: int | None, max_bytes: int, rec: Recording
) -> tuple[int, str]:
    if expected is not None and expected > max_bytes:
        raise PbxError(_too_big(expected, max_bytes, rec), transient=False, kind="too_large")
    digest = hashlib.sha256()
    size = 0
    # 0600 whatever the umask: a call recording is for the service alone.
    async with aiofiles.open(path, "wb", opener=_private) as out:
        async for chunk in body:
            if size == 0 and chunk.lstrip()[:1] == b"<":
                raise PbxError(
                    "download: PBX sent an HTML page, not audio", transient=True, kind="html_page"
                )
            size += len(chunk)
            if size > max_bytes:
                raise PbxError(_too_big(size, max_bytes, rec), transient=False, kind="too_large")
            digest.update(chunk)
            await out.write(chunk)
    if expected is not None and size != expected:
        raise PbxError(
            f"download: body cut short ({size} of {expected} bytes)",
            transient=True,
            kind="truncated",
        )
    return size, digest.hexdigest()


def _too_big(size: int, max_bytes: int, rec: Recording) -> str:
    return (
        f"download: {size} bytes or more, but a {rec.duration_s} s .{rec.extension} recording "
        f"is at most {max_bytes}"
    )


def _private(path: str, flags: int) -> int:
    return os.open(path, flags, 0o600)


def _delimited_by_close(response: aiohttp.ClientResponse) -> bool:
    """No Content-Length and not chunked: only the closed connection said where the body ended."""
    chunked = "chunked" in response.headers.get("Transfer-Encoding", "").lower()
    return response.content_length is None and not chunked


async def _remove_quietly(path: Path) -> None:
    with contextlib.suppress(FileNotFoundError):
        await aiofiles.os.remove(path)
