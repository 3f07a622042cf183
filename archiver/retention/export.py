"""An access request (KVKK art. 11, GDPR art. 15): every archived recording of one number, byte
for byte as archived, in one zip with `manifest.csv` (key, start with offset, caller, callee,
duration, the SHA-256 of each MP3 as written to the zip, the PBX original's SHA-256) and
`request.txt` (the request's reference). Written to `OUT.part` and renamed when complete, so a
half-written zip never carries the final name; recorded in the access log (action `export`)."""

from __future__ import annotations

import csv
import hashlib
import io
import zipfile
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Final

from archiver.s3 import S3Store
from archiver.state import AccessEvent, CatalogueEntry, State

__all__ = ["MANIFEST_COLUMNS", "ExportResult", "export_number"]

MANIFEST_COLUMNS: Final = (
    "key", "started_at", "caller", "callee", "duration_s", "sha256", "source_sha256",
)  # fmt: skip
_CHUNK: Final = 1 << 20


@dataclass(frozen=True, slots=True)
class ExportResult:
    """The zip written, how many recordings and MP3 bytes it holds."""

    path: Path
    recordings: int
    mp3_bytes: int


def _member(entry: CatalogueEntry, taken: set[str]) -> str:
    """The recording's name in the zip: its object key's last part, made unique."""
    name = entry.object_key.rsplit("/", 1)[-1]
    stem, dot, ext = name.rpartition(".")
    candidate, n = name, 1
    while candidate in taken:
        n += 1
        candidate = f"{stem}-{n}.{ext}" if dot else f"{name}-{n}"
    taken.add(candidate)
    return f"recordings/{candidate}"


def _copy(store: S3Store, key: str, archive: zipfile.ZipFile, member: str) -> tuple[str, int]:
    reader = store.open_read(key)
    digest, size = hashlib.sha256(), 0
    try:
        with archive.open(zipfile.ZipInfo(member, date_time=(1980, 1, 1, 0, 0, 0)), "w") as out:
            while chunk := reader.read(_CHUNK):
                digest.update(chunk)
                out.write(chunk)
                size += len(chunk)
    finally:
        reader.close()
    return digest.hexdigest(), size


def export_number(
    state: State,
    store: S3Store,
    number: str,
    reference: str,
    out: Path,
    *,
    username: str,
    shown_number: str,
) -> ExportResult:
    """Write the zip of `number`'s recordings (a `number_key`; `shown_number` as the request
    gave it) to `out`; record the export in the access log. Raise `StoreError` if an object
    cannot be read (nothing is left at `out` then), `OSError` if `out` cannot be written."""
    entries = state.destructions.of_number(number)
    part = out.with_name(out.name + ".part")
    rows: list[list[str]] = []
    total = 0
    try:
        with zipfile.ZipFile(part, "w", compression=zipfile.ZIP_STORED) as archive:
            taken: set[str] = set()
            for entry in entries:
                sha, size = _copy(store, entry.object_key, archive, _member(entry, taken))
                total += size
                rows.append([
                    entry.object_key, entry.started_at.isoformat(), entry.caller, entry.callee,
                    str(entry.duration_s), sha,
                    state.destructions.source_sha256(entry.recording_key) or "",
                ])  # fmt: skip
            manifest = io.StringIO()
            writer = csv.writer(manifest, lineterminator="\n")
            writer.writerow(MANIFEST_COLUMNS)
            writer.writerows(rows)
            archive.writestr("manifest.csv", manifest.getvalue())
            archive.writestr(
                "request.txt",
                f"request: {reference}\nnumber: {shown_number}\n"
                f"exported_at: {datetime.now(UTC).isoformat(timespec='seconds')}\n"
                f"exported_by: {username}\nrecordings: {len(rows)}\n",
            )
        part.replace(out)
    except BaseException:
        part.unlink(missing_ok=True)
        raise
    state.access_log.record(
        AccessEvent(
            at=datetime.now(UTC),
            username=username,
            action="export",
            outcome="ok",
            source="archiver export",
            detail=f"request {reference}",
            item_count=len(rows),
            object_keys=tuple(entry.object_key for entry in entries),
        )
    )
    return ExportResult(out, len(rows), total)
