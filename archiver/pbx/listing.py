"""A listing body, split into lines as it streams in, within fixed caps.

A PBX that sends megabytes of junk must cost neither memory nor time: every line is counted
before anything is split (``bytes.count`` runs in C), a line longer than `MAX_LINE_BYTES` keeps
only its start (enough for `names` to refuse it), and the whole body stops at `MAX_LISTING_BYTES`.

How the caps were chosen: one day's listing (the daemon polls by date prefix) of a very busy PBX
of this class, 100 channels busy around the clock with 90 s calls, is 96,000 recordings; so
`MAX_LISTING_LINES` = 100,000. A real line is an absolute path of at most ~170 bytes (38 of
root, a trunk folder, a name with two long numbers and a uniqueid); 100,000 of them are 17 MB,
so `MAX_LISTING_BYTES` = 16 MiB plus what an average below 160 bytes leaves over. The old cap of
64 MiB of two-byte lines was 22 million lines and +444 MiB of Python strings; now the count cap
stops such a body after its first 300 kB.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

from archiver.errors import ArchiverError, Kind

__all__ = [
    "HTML_MARKERS",
    "MAX_LINE_BYTES",
    "MAX_LISTING_BYTES",
    "MAX_LISTING_LINES",
    "LineCollector",
    "Listing",
    "ListingRefused",
    "is_login_page",
]

MAX_LISTING_LINES: Final = 100_000
MAX_LISTING_BYTES: Final = 16 * 1024 * 1024
# `names` refuses lines over 512 characters; keeping a little more lets it say so.
MAX_LINE_BYTES: Final = 1024
_HEAD_BYTES: Final = 512
HTML_MARKERS: Final = (b"<!doctype", b"<html", b"<head", b"<body", b"<title", b"<?xml")


class ListingRefused(ArchiverError):
    """The body is not a listing we will read (an HTML page, or over a cap); see
    `ArchiverError` for `reason`, `transient` and `kind`. `login_page`: the HTML page is the web
    interface's login page (a firmware CGI's answer to a wrong username or password)."""

    def __init__(
        self, reason: str, *, transient: bool, kind: Kind, login_page: bool = False
    ) -> None:
        super().__init__(reason, transient=transient, kind=kind)
        self.login_page = login_page


def is_login_page(page: bytes) -> bool:
    """Whether an HTML page (its first few KiB) is a login form."""
    head = page[:4096].lower()
    return b'type="password"' in head or b"login" in head


@dataclass(frozen=True, slots=True)
class Listing:
    """Lines of a listing, decoded and split; nothing in it is trusted yet."""

    lines: list[str]
    blank_lines: int = 0


class LineCollector:
    """Feed it a listing body chunk by chunk, then `finish()` for the `Listing`.

    BOM, CRLF and blank lines are tolerated; `feed` and `finish` raise `ListingRefused` for an
    HTML page (a login or error page with status 200 must never read as "no recordings") or a
    body over `max_bytes` or `max_lines` lines (blank ones included).
    """

    def __init__(
        self,
        *,
        max_lines: int = MAX_LISTING_LINES,
        max_bytes: int = MAX_LISTING_BYTES,
        max_line_bytes: int = MAX_LINE_BYTES,
    ) -> None:
        self.max_lines = max_lines
        self.max_bytes = max_bytes
        self.max_line_bytes = max_line_bytes
        self._head = bytearray()
        self._head_checked = False
        self._partial = bytearray()
        self._lines: list[str] = []
        self._blank = 0
        self._ended = 0
        self._bytes = 0

    def feed(self, chunk: bytes) -> None:
        self._bytes += len(chunk)
        if self._bytes > self.max_bytes:
            raise ListingRefused(
                f"listing larger than {self.max_bytes} bytes", transient=False, kind="too_large"
            )
        if not self._head_checked:
            self._head += chunk
            if len(self._head) < _HEAD_BYTES:
                return
            chunk = self._take_head()
        self._split(chunk)

    def finish(self, *, require_final_newline: bool = False) -> Listing:
        """The listing. With `require_final_newline` (a body with no Content-Length, ended by
        the closed connection), a last line without its newline raises a transient
        `ListingRefused`: every line the shell prints ends with one, so the body was cut."""
        if not self._head_checked:
            self._split(self._take_head())
        if require_final_newline and self._partial:
            raise ListingRefused(
                "body cut short (its last line is unfinished)", transient=True, kind="truncated"
            )
        self._end_line()
        return Listing(lines=self._lines, blank_lines=self._blank)

    def _take_head(self) -> bytes:
        head = bytes(self._head)
        self._head.clear()
        self._head_checked = True
        start = head[:_HEAD_BYTES].lstrip().lower()
        if start.startswith(b"<") or any(marker in start for marker in HTML_MARKERS):
            if is_login_page(head):
                reason = (
                    "PBX answered with an HTML page (its login page: credentials not accepted?) "
                    "instead of a listing"
                )
                raise ListingRefused(reason, transient=True, kind="html_page", login_page=True)
            reason = "PBX answered with an HTML page instead of a listing"
            raise ListingRefused(reason, transient=True, kind="html_page")
        return head

    def _split(self, chunk: bytes) -> None:
        if self._ended + chunk.count(b"\n") >= self.max_lines:
            raise ListingRefused(
                f"listing has more than {self.max_lines} lines", transient=False, kind="too_large"
            )
        pieces = chunk.split(b"\n")
        for piece in pieces[:-1]:
            self._extend(piece)
            self._end_line()
        self._extend(pieces[-1])

    def _extend(self, piece: bytes) -> None:
        room = self.max_line_bytes + 1 - len(self._partial)
        if room > 0:
            self._partial += piece[:room]

    def _end_line(self) -> None:
        line = self._partial.decode("utf-8", errors="replace").rstrip("\r")
        self._partial.clear()
        if self._ended == 0:
            line = line.removeprefix("\ufeff")
        self._ended += 1
        if line.strip():
            self._lines.append(line)
        else:
            self._blank += 1
