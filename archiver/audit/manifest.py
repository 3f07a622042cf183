"""manifest.csv: one line per exported recording with its identity and hashes, the file a court
(or a data subject) checks an export against. Shared by every export of recordings."""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Final

__all__ = ["MANIFEST_COLUMNS", "ManifestRow", "manifest_csv"]

MANIFEST_COLUMNS: Final = (
    "file",
    "key",
    "pbx",
    "started_at",
    "caller",
    "callee",
    "duration_s",
    "size_bytes",
    "sha256",
    "source_sha256",
    "archive_check",
)


@dataclass(frozen=True, slots=True)
class ManifestRow:
    """One exported MP3: `file` its path inside the zip, `key` its object key, `started_at`
    ISO 8601 with the PBX's offset, `sha256` of the bytes exported, `source_sha256` of the PBX's
    original (empty if unrecorded), `archive_check` whether the bytes match the MD5 recorded when
    the call was archived (`ok`, `MISMATCH`, `unrecorded`)."""

    file: str
    key: str
    pbx: str
    started_at: str
    caller: str
    callee: str
    duration_s: int
    size_bytes: int
    sha256: str
    source_sha256: str
    archive_check: str

    def values(self) -> tuple[str, ...]:
        return tuple(str(getattr(self, name)) for name in MANIFEST_COLUMNS)


def manifest_csv(rows: Iterable[ManifestRow]) -> bytes:
    """The manifest as UTF-8 CSV (RFC 4180: CRLF line ends, a header line)."""
    out = io.StringIO(newline="")
    writer = csv.writer(out, lineterminator="\r\n")
    writer.writerow(MANIFEST_COLUMNS)
    for row in rows:
        writer.writerow([_safe_cell(value) for value in row.values()])
    return out.getvalue().encode("utf-8")


def _safe_cell(value: str) -> str:
    # A spreadsheet runs a cell starting with = + - @ as a formula: keep it text. Our values are
    # allow-listed names and numbers; a leading + (an E.164 number) is the one that occurs.
    return "'" + value if value[:1] in ("=", "+", "-", "@") else value
