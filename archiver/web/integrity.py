"""Audio streamed whole by the web is checked on the way: its MD5 against the one the state
recorded when the call was archived. A mismatch (bit rot, tampering in the bucket) is logged
(`integrity_mismatch`), counted and remembered for the call, so the status view and the call's
access history show it. Byte ranges are not checked (a range has no recorded hash); a browser's
`Range: bytes=0-` is the whole file and is."""

from __future__ import annotations

import base64
import hashlib
import threading
from datetime import UTC, datetime
from typing import TYPE_CHECKING

import structlog

from archiver.s3 import ObjectReader

if TYPE_CHECKING:  # the context holds the notes: no import cycle at run time
    from archiver.web.context import WebContext

__all__ = ["IntegrityNotes", "StreamCheck", "finish_check", "start_check"]

log = structlog.get_logger("archiver.web")


class IntegrityNotes:
    """The calls whose streamed bytes did not match, with when (this process's life)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._seen: dict[str, datetime] = {}
        self.count = 0

    def note(self, key: str) -> None:
        with self._lock:
            self._seen[key] = datetime.now(UTC)
            self.count += 1

    def get(self, key: str) -> datetime | None:
        with self._lock:
            return self._seen.get(key)


class StreamCheck:
    """The MD5 of a whole-file stream, against `expected_md5` (base64)."""

    def __init__(self, key: str, expected_md5: str) -> None:
        self.key = key
        self._expected = expected_md5
        self._md5 = hashlib.md5(usedforsecurity=False)

    def update(self, chunk: bytes) -> None:
        self._md5.update(chunk)

    @property
    def matches(self) -> bool:
        return base64.b64encode(self._md5.digest()).decode() == self._expected


async def start_check(context: WebContext, reader: ObjectReader) -> StreamCheck | None:
    """A check for `reader` when it reads the whole object and the state recorded its MD5."""
    if reader.first_byte != 0 or reader.last_byte != reader.total_bytes - 1:
        return None
    expected = (await context.in_db(context.state.fixity.of_keys, [reader.key])).get(reader.key)
    if expected is None or expected.md5_b64 is None:
        return None
    return StreamCheck(reader.key, expected.md5_b64)


def finish_check(context: WebContext, check: StreamCheck | None) -> None:
    """After the whole object was sent: log, count and remember a mismatch."""
    if check is not None and not check.matches:
        log.error("integrity_mismatch", key=check.key,
                  reason="streamed bytes differ from the MD5 recorded at archiving")  # fmt: skip
        context.integrity.note(check.key)
