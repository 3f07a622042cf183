"""Audio out of the bucket, through `archiver web` (the browser never needs S3 access).

`GET /audio/{key}` streams one recording (`?download=1`: as an attachment named after the
original), answering a Range request with 206 and only that range. `POST /zip` streams several as
one zip. Both read S3 in 64 KiB chunks and write each chunk before reading the next, so memory
stays flat whatever the file size. Only keys in the catalogue are served: the bucket's other
objects (quarantined originals, someone else's files) are not reachable through here. Every play
and download is an access-log row saying what was served (status, bytes, the range sent), not
what was asked.

A zip is written by `zipfile` in a thread of its own (`WebContext.zip_threads`, one per admitted
zip) into a `ZipPipe` that the event loop itself drains: the writer never waits on a thread that
another writer holds, so no number of zips can deadlock the server. Zips at once are limited per
user and in total (`zip_max_per_user`, `zip_max_concurrent`): beyond, 429 or 503 with
Retry-After.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import re
import threading
import zipfile
from collections.abc import Iterator
from typing import Final

from aiohttp import web

from archiver.s3 import CONTENT_TYPE, ObjectMissing, ObjectReader, RangeNotSatisfiable, StoreError
from archiver.state import CatalogueEntry
from archiver.web.context import CONTEXT_KEY, USER_KEY, WebContext, log
from archiver.web.integrity import finish_check, start_check
from archiver.web.limits import LimitReached

__all__ = ["ZipPipe", "add_audio_routes"]

_CHUNK_BYTES: Final = 64 * 1024
_PIPE_CHUNKS: Final = 8  # chunks a zip writer may be ahead of the client
_ZIP_RETRY_AFTER_S: Final = 10
# One range of the forms HTTP allows: A-B, A-, -N. Several ranges are answered with the whole
# file (RFC 9110 lets a server ignore Range), which browsers never ask for in <audio> anyway.
_RANGE_RE: Final = re.compile(r"bytes=(?:[0-9]{1,15}-[0-9]{0,15}|-[0-9]{1,15})")


def _disposition(kind: str, filename: str) -> str:
    # Source names are allow-listed ASCII ([A-Za-z0-9+_.-]): safe inside the quotes.
    return f'{kind}; filename="{filename}"'


async def _entry_or_404(request: web.Request, key: str) -> CatalogueEntry:
    """The catalogue entry of `key` if it is in the user's scope; 404 otherwise, the same answer
    as for a key that does not exist; 410 for a recording the retention code destroyed."""
    context = request.app[CONTEXT_KEY]
    entry = await context.in_db(context.catalogue.get, key, scope=context.access(request).scope)
    if entry is None:
        # Destroyed on purpose (retention or an erasure request): 410 Gone, not "never was".
        if await context.in_db(context.state.destructions.of_object, key) is not None:
            raise web.HTTPGone(text="this recording was destroyed (retention or erasure)\n")
        raise web.HTTPNotFound(text="no such recording\n")
    return entry


async def _audio(request: web.Request) -> web.StreamResponse:
    context = request.app[CONTEXT_KEY]
    entry = await _entry_or_404(request, request.match_info["key"])
    download = request.query.get("download") == "1"
    asked = request.headers.get("Range")
    byte_range = asked if asked is not None and _RANGE_RE.fullmatch(asked) else None
    try:
        reader = await context.in_s3(context.store.open_read, entry.object_key, byte_range)
    except RangeNotSatisfiable as error:
        raise web.HTTPRequestRangeNotSatisfiable(
            headers={"Content-Range": f"bytes */{error.total_bytes}"}
        ) from None
    except ObjectMissing:
        log.error("catalogued_object_missing", key=entry.object_key)
        raise web.HTTPNotFound(text="the recording is missing from the bucket\n") from None
    except StoreError as error:
        log.error("s3_read_failed", key=entry.object_key, reason=error.reason)
        raise web.HTTPBadGateway(text="the archive could not be read; try again\n") from None
    status = 206 if reader.partial else 200
    served = None
    if reader.partial:
        served = f"bytes {reader.first_byte}-{reader.last_byte}/{reader.total_bytes}"
    await context.record(
        request,
        username=request[USER_KEY],
        action="download" if download else "play",
        object_key=entry.object_key,
        byte_range=served,
        detail=f"{status}, {reader.length_bytes} bytes",
    )
    response = web.StreamResponse(status=status)
    response.headers["Content-Type"] = CONTENT_TYPE
    response.headers["Accept-Ranges"] = "bytes"
    response.headers["Cache-Control"] = "private, no-store"
    response.headers["Content-Disposition"] = _disposition(
        "attachment" if download else "inline", entry.download_name
    )
    if served is not None:
        response.headers["Content-Range"] = served
    response.content_length = reader.length_bytes
    await _stream(context, request, response, reader)
    return response


async def _stream(
    context: WebContext, request: web.Request, response: web.StreamResponse, reader: ObjectReader
) -> None:
    check = await start_check(context, reader)  # whole files only (issue 21)
    try:
        await response.prepare(request)
        while chunk := await context.in_s3(reader.read, _CHUNK_BYTES):
            if check is not None:
                check.update(chunk)
            await response.write(chunk)
        await response.write_eof()
        finish_check(context, check)
    except StoreError as error:  # S3 broke mid-stream: the client sees a short body
        log.warning("s3_read_broken", key=reader.key, reason=error.reason)
    except ConnectionResetError:
        pass  # the browser moved on (a seek opens a new range): nothing is wrong
    finally:
        await context.in_s3(reader.close)


class ZipPipe:
    """A file-like sink for `zipfile` in a worker thread, drained by the event loop.

    `write` (in the writer's thread) waits for room among `_PIPE_CHUNKS` chunks, checking every
    half second whether the reader gave up; `get` (on the event loop) awaits the next chunk
    without any thread. So a writer only ever waits for the event loop, which never waits for a
    writer."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self._chunks: collections.deque[bytes | None] = collections.deque()
        self._room = threading.Semaphore(_PIPE_CHUNKS)
        self._ready = asyncio.Event()
        self.cancelled = threading.Event()
        self._offset = 0

    def write(self, data: bytes) -> int:
        if data:
            while not self._room.acquire(timeout=0.5):
                if self.cancelled.is_set():
                    raise BrokenPipeError("the client went away")
            if self.cancelled.is_set():
                raise BrokenPipeError("the client went away")
            self._put(bytes(data))
            self._offset += len(data)
        return len(data)

    def close_writing(self) -> None:
        """The writer is done (or failed): `get` answers None after the chunks left."""
        self._put(None)

    def _put(self, chunk: bytes | None) -> None:
        self._chunks.append(chunk)
        try:
            self._loop.call_soon_threadsafe(self._ready.set)
        except RuntimeError:  # the event loop is closed: nobody is reading any more
            self.cancelled.set()
            raise BrokenPipeError("the server is stopping") from None

    async def get(self) -> bytes | None:
        """The next chunk, or None when the writer is done."""
        while not self._chunks:
            self._ready.clear()
            if self._chunks:
                break
            await self._ready.wait()
        chunk = self._chunks.popleft()
        if chunk is not None:
            self._room.release()
        return chunk

    def cancel(self) -> None:
        """The reader gives up: the writer stops at its next write."""
        self.cancelled.set()
        self._room.release()

    def tell(self) -> int:
        return self._offset

    def flush(self) -> None:
        pass


def _write_zip(context: WebContext, entries: list[CatalogueEntry], pipe: ZipPipe) -> None:
    """Write the zip of `entries` into `pipe` (in a thread), reading S3 chunk by chunk."""
    try:
        with zipfile.ZipFile(pipe, "w", compression=zipfile.ZIP_STORED) as archive:  # type: ignore[call-overload]  # a write-only stream is enough
            for entry in entries:
                if pipe.cancelled.is_set():
                    raise BrokenPipeError("the client went away")
                reader = context.store.open_read(entry.object_key)
                try:
                    info = zipfile.ZipInfo(entry.download_name, _zip_time(entry))
                    with archive.open(info, "w", force_zip64=True) as member:
                        for chunk in _chunks(reader):
                            member.write(chunk)
                finally:
                    reader.close()
    finally:
        with contextlib.suppress(BrokenPipeError):  # nobody reads any more
            pipe.close_writing()


def _chunks(reader: ObjectReader) -> Iterator[bytes]:
    while chunk := reader.read(_CHUNK_BYTES):
        yield chunk


def _zip_time(entry: CatalogueEntry) -> tuple[int, int, int, int, int, int]:
    moment = entry.started_at
    year = max(moment.year, 1980)  # zip dates start in 1980
    return (year, moment.month, moment.day, moment.hour, moment.minute, moment.second)


async def _zip(request: web.Request) -> web.StreamResponse:
    context = request.app[CONTEXT_KEY]
    form = await request.post()
    keys = list(dict.fromkeys(str(value) for value in form.getall("key", [])))
    if not keys:
        raise web.HTTPBadRequest(text="select at least one recording\n")
    if len(keys) > context.cfg.web.zip_max_files:
        raise web.HTTPBadRequest(text=f"at most {context.cfg.web.zip_max_files} per zip\n")
    user = request[USER_KEY]
    try:
        with context.zips.slot(user):
            return await _zip_admitted(request, context, keys)
    except LimitReached as refused:
        retry = {"Retry-After": str(_ZIP_RETRY_AFTER_S)}
        log.info("zip_refused", user=user, limit=refused.scope)
        if refused.scope == "user":
            raise web.HTTPTooManyRequests(
                text=f"at most {context.cfg.web.zip_max_per_user} zips at once per user: "
                "wait for one to finish\n",
                headers=retry,
            ) from None
        raise web.HTTPServiceUnavailable(
            text="the server is making as many zips as it can: try again shortly\n",
            headers=retry,
        ) from None


async def _zip_admitted(
    request: web.Request, context: WebContext, keys: list[str]
) -> web.StreamResponse:
    entries = [await _entry_or_404(request, key) for key in keys]
    names = [entry.download_name for entry in entries]
    if len(set(names)) != len(names):
        raise web.HTTPBadRequest(text="two selected recordings have the same name\n")
    for entry in entries:
        await context.record(
            request,
            username=request[USER_KEY],
            action="zip",
            object_key=entry.object_key,
            detail="zip",
        )
    response = web.StreamResponse()
    response.headers["Content-Type"] = "application/zip"
    response.headers["Cache-Control"] = "private, no-store"
    response.headers["Content-Disposition"] = _disposition("attachment", "recordings.zip")
    await response.prepare(request)
    loop = asyncio.get_running_loop()
    pipe = ZipPipe(loop)
    writer = loop.run_in_executor(context.zip_threads, _write_zip, context, entries, pipe)
    try:
        while (chunk := await pipe.get()) is not None:
            await response.write(chunk)
        await writer  # raises what the writer raised
        await response.write_eof()
    except (StoreError, ConnectionResetError, BrokenPipeError) as error:
        # Headers are gone: the client gets a truncated zip, which every unzip reports.
        log.warning("zip_stream_broken", reason=getattr(error, "reason", type(error).__name__))
    finally:
        pipe.cancel()
        if not writer.done():
            # Cancelled (client gone, server stopping): the writer stops within half a second.
            writer.add_done_callback(_consume)
    return response


def _consume(future: asyncio.Future[None]) -> None:
    if not future.cancelled():
        future.exception()  # retrieved, so asyncio does not report it as never retrieved


def add_audio_routes(app: web.Application) -> None:
    app.router.add_get("/audio/{key:.+}", _audio)
    app.router.add_post("/zip", _zip)
