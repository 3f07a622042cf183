"""Audio out of the bucket, through `archiver web` (the browser never needs S3 access).

`GET /audio/{key}` streams one recording (`?download=1`: as an attachment named after the
original), answering a Range request with 206 and only that range. `POST /zip` streams several as
one zip. Both read S3 in 64 KiB chunks and write each chunk before reading the next, so memory
stays flat whatever the file size. Only keys in the catalogue are served: the bucket's other
objects (quarantined originals, someone else's files) are not reachable through here. Every play
and download is an access-log row.
"""

from __future__ import annotations

import asyncio
import queue
import re
import threading
import zipfile
from collections.abc import Iterator
from typing import Final

from aiohttp import web

from archiver.s3 import CONTENT_TYPE, StoreError
from archiver.s3.store import ObjectMissing, ObjectReader, RangeNotSatisfiable
from archiver.state.catalogue import CatalogueEntry
from archiver.web.context import CONTEXT_KEY, USER_KEY, WebContext, log

__all__ = ["add_audio_routes"]

_CHUNK_BYTES: Final = 64 * 1024
# One range of the forms HTTP allows: A-B, A-, -N. Several ranges are answered with the whole
# file (RFC 9110 lets a server ignore Range), which browsers never ask for in <audio> anyway.
_RANGE_RE: Final = re.compile(r"bytes=(?:[0-9]{1,15}-[0-9]{0,15}|-[0-9]{1,15})")


def _disposition(kind: str, filename: str) -> str:
    # Source names are allow-listed ASCII ([A-Za-z0-9+_.-]): safe inside the quotes.
    return f'{kind}; filename="{filename}"'


async def _entry_or_404(request: web.Request, key: str) -> CatalogueEntry:
    """The catalogue entry of `key` if it is in the user's scope; 404 otherwise, the same answer
    as for a key that does not exist."""
    context = request.app[CONTEXT_KEY]
    entry = await context.in_db(context.catalogue.get, key, scope=context.access(request).scope)
    if entry is None:
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
    await context.record(
        request,
        username=request[USER_KEY],
        action="download" if download else "play",
        object_key=entry.object_key,
        byte_range=asked,
    )
    response = web.StreamResponse(status=206 if reader.partial else 200)
    response.headers["Content-Type"] = CONTENT_TYPE
    response.headers["Accept-Ranges"] = "bytes"
    response.headers["Cache-Control"] = "private, no-store"
    response.headers["Content-Disposition"] = _disposition(
        "attachment" if download else "inline", entry.download_name
    )
    if reader.partial:
        response.headers["Content-Range"] = (
            f"bytes {reader.first_byte}-{reader.last_byte}/{reader.total_bytes}"
        )
    response.content_length = reader.length_bytes
    await _stream(context, request, response, reader)
    return response


async def _stream(
    context: WebContext, request: web.Request, response: web.StreamResponse, reader: ObjectReader
) -> None:
    try:
        await response.prepare(request)
        while chunk := await context.in_s3(reader.read, _CHUNK_BYTES):
            await response.write(chunk)
        await response.write_eof()
    except StoreError as error:  # S3 broke mid-stream: the client sees a short body
        log.warning("s3_read_broken", key=reader.key, reason=error.reason)
    except ConnectionResetError:
        pass  # the browser moved on (a seek opens a new range): nothing is wrong
    finally:
        await context.in_s3(reader.close)


class _Pipe:
    """A file-like sink for `zipfile` in a worker thread: each write goes into a bounded queue
    that the event loop drains into the response (a full queue makes the writer wait)."""

    def __init__(self) -> None:
        self.chunks: queue.Queue[bytes | None] = queue.Queue(maxsize=8)
        self.cancelled = threading.Event()
        self._offset = 0

    def write(self, data: bytes) -> int:
        if self.cancelled.is_set():
            raise BrokenPipeError("the client went away")
        if data:
            self.chunks.put(bytes(data))
            self._offset += len(data)
        return len(data)

    def tell(self) -> int:
        return self._offset

    def flush(self) -> None:
        pass


def _write_zip(context: WebContext, entries: list[CatalogueEntry], pipe: _Pipe) -> None:
    """Write the zip of `entries` into `pipe` (in a thread), reading S3 chunk by chunk."""
    try:
        with zipfile.ZipFile(pipe, "w", compression=zipfile.ZIP_STORED) as archive:  # type: ignore[call-overload]  # a write-only stream is enough
            for entry in entries:
                reader = context.store.open_read(entry.object_key)
                try:
                    info = zipfile.ZipInfo(entry.download_name, _zip_time(entry))
                    with archive.open(info, "w", force_zip64=True) as member:
                        for chunk in _chunks(reader):
                            member.write(chunk)
                finally:
                    reader.close()
    finally:
        pipe.chunks.put(None)


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
    pipe = _Pipe()
    writer = asyncio.get_running_loop().run_in_executor(
        context.s3_threads, _write_zip, context, entries, pipe
    )
    try:
        while (chunk := await context.in_s3(pipe.chunks.get)) is not None:
            await response.write(chunk)
        await writer  # raises what the writer raised
        await response.write_eof()
    except (StoreError, ConnectionResetError, BrokenPipeError) as error:
        # Headers are gone: the client gets a truncated zip, which every unzip reports.
        log.warning("zip_stream_broken", reason=getattr(error, "reason", type(error).__name__))
    finally:
        pipe.cancelled.set()
        while not pipe.chunks.empty():  # unblock a writer waiting on a full queue
            pipe.chunks.get_nowait()
    return response


def add_audio_routes(app: web.Application) -> None:
    app.router.add_get("/audio/{key:.+}", _audio)
    app.router.add_post("/zip", _zip)
