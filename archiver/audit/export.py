"""The court export: the calls a search matched, as a zip of the MP3s exactly as archived (byte
for byte the bucket's objects), `manifest.csv` (identity and SHA-256 of each) and `export.txt`
(who, when, the case, the filters, the count, the manifest's SHA-256).

Written into any binary sink (a pipe to an HTTP response, a file) from a worker thread, each
object read in chunks and written before the next is read: memory stays flat whatever the size.
Each MP3's MD5 is checked on the way against the one recorded when it was archived; a mismatch
is written into the manifest (`archive_check = MISMATCH`) and export.txt, never hidden.
"""

from __future__ import annotations

import base64
import hashlib
import posixpath
import re
import zipfile
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import IO, Final

from archiver import __version__
from archiver.audit.manifest import ManifestRow, manifest_csv
from archiver.s3 import S3Store
from archiver.state import CatalogueEntry, Expected

__all__ = [
    "CaseReference",
    "ExportRequest",
    "ExportSummary",
    "InvalidCase",
    "export_text",
    "write_export",
]

_CHUNK_BYTES: Final = 64 * 1024
_CASE_RE: Final = re.compile(r"[^\x00-\x1f\x7f]{1,200}")


class InvalidCase(ValueError):
    """A case reference that cannot be used; `reason` is safe to show."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class CaseReference(str):
    """A case reference: 1-200 characters, no control characters, blanks trimmed."""

    __slots__ = ()

    @classmethod
    def parse(cls, text: str | None) -> CaseReference:
        value = (text or "").strip()
        if not value:
            raise InvalidCase("a court export needs a case reference")
        if _CASE_RE.fullmatch(value) is None:
            raise InvalidCase("a case reference is 1-200 characters without control codes")
        return cls(value)


@dataclass(frozen=True, slots=True)
class ExportRequest:
    """Who exports what: the user and their role, the case, the search's filters as text, the
    user's scope as text, and when (aware, local)."""

    username: str
    role: str
    case: CaseReference
    filters: str
    scope: str
    at: datetime


@dataclass(frozen=True, slots=True)
class ExportSummary:
    """What was written: the manifest's rows and SHA-256."""

    rows: tuple[ManifestRow, ...]
    manifest_sha256: str

    @property
    def mismatched(self) -> tuple[ManifestRow, ...]:
        return tuple(row for row in self.rows if row.archive_check == "MISMATCH")


def _member_name(entry: CatalogueEntry, taken: set[str]) -> str:
    base = f"recordings/{entry.pbx}/{posixpath.basename(entry.object_key)}"
    name, n = base, 1
    while name in taken:
        n += 1
        name = base.replace(".mp3", f"-{n}.mp3")
    taken.add(name)
    return name


def _zip_time(moment: datetime) -> tuple[int, int, int, int, int, int]:
    return (max(moment.year, 1980), moment.month, moment.day, moment.hour, moment.minute,
            moment.second)  # fmt: skip


def _check(md5_b64: str, expected: Expected | None) -> str:
    if expected is None or expected.md5_b64 is None:
        return "unrecorded"
    return "ok" if md5_b64 == expected.md5_b64 else "MISMATCH"


def export_text(request: ExportRequest, summary: ExportSummary) -> str:
    """export.txt: the export's own statement, for the file and for the closing note."""
    total = sum(row.size_bytes for row in summary.rows)
    mismatched = summary.mismatched
    check = (
        f"all {len(summary.rows)} MP3s match the MD5 recorded when they were archived"
        if not mismatched and all(row.archive_check == "ok" for row in summary.rows)
        else f"{len(mismatched)} MISMATCH(ES): "
        + ", ".join(row.key for row in mismatched)
        + "; see archive_check in manifest.csv"
    )
    lines = [
        "Court export of call recordings (archiver)",
        "",
        f"Exported by:       {request.username} (role {request.role})",
        f"Exported at:       {request.at.isoformat(timespec='seconds')}",
        f"Case reference:    {request.case}",
        f"Search filters:    {request.filters.strip() or '(none: every call in the scope)'}",
        f"User's scope:      {request.scope}",
        f"Recordings:        {len(summary.rows)} MP3 files, {total} bytes",
        f"manifest.csv SHA-256: {summary.manifest_sha256}",
        f"Archive check:     {check}",
        "",
        "Each MP3 is byte for byte the object stored in the archive's bucket under the key",
        "manifest.csv names; its SHA-256 is in manifest.csv (check: sha256sum recordings/*/*),",
        "and this file gives the SHA-256 of manifest.csv. The export is one event in the",
        "archive's access log (hash-chained; `archiver audit --action export`).",
        f"archiver {__version__}",
        "",
    ]
    return "\n".join(lines)


def write_export(
    sink: IO[bytes],
    store: S3Store,
    entries: Sequence[CatalogueEntry],
    expected: dict[str, Expected],
    request: ExportRequest,
) -> ExportSummary:
    """Write the export zip of `entries` into `sink` (blocking; run it in a thread). Raise
    `StoreError` if the bucket fails part way (the zip is then incomplete, and unzip says so)."""
    rows: list[ManifestRow] = []
    taken: set[str] = set()
    with zipfile.ZipFile(sink, "w", compression=zipfile.ZIP_STORED) as archive:
        for entry in entries:
            name = _member_name(entry, taken)
            sha256, md5, size = hashlib.sha256(), hashlib.md5(usedforsecurity=False), 0
            reader = store.open_read(entry.object_key)
            try:
                info = zipfile.ZipInfo(name, _zip_time(entry.started_at))
                with archive.open(info, "w", force_zip64=True) as member:
                    while chunk := reader.read(_CHUNK_BYTES):
                        sha256.update(chunk)
                        md5.update(chunk)
                        size += len(chunk)
                        member.write(chunk)
            finally:
                reader.close()
            known = expected.get(entry.object_key)
            rows.append(ManifestRow(
                file=name, key=entry.object_key, pbx=entry.pbx,
                started_at=entry.started_at.isoformat(), caller=entry.caller,
                callee=entry.callee, duration_s=entry.duration_s, size_bytes=size,
                sha256=sha256.hexdigest(),
                source_sha256=(known.source_sha256 if known else None) or "",
                archive_check=_check(base64.b64encode(md5.digest()).decode(), known),
            ))  # fmt: skip
        manifest = manifest_csv(rows)
        summary = ExportSummary(tuple(rows), hashlib.sha256(manifest).hexdigest())
        stamp = _zip_time(request.at)
        archive.writestr(zipfile.ZipInfo("manifest.csv", stamp), manifest)
        archive.writestr(zipfile.ZipInfo("export.txt", stamp), export_text(request, summary))
    return summary
