"""Quarantine: where the original bytes of an `empty` recording go when `on_empty = "quarantine"`.

Asterisk leaves a header-only WAV (a few hundred bytes) for every unanswered call. Some operators
want to keep even those, so the original file is stored as it came from the PBX, under
`{prefix}/quarantine/{pbx}/{trunk}/{name}` (`archiver.s3.quarantine_key`), with the usual
metadata plus `outcome` and `reason`. This module hashes the original and builds its metadata;
the daemon decides when, `S3Store` does the upload.
Knows names and S3 metadata rules, not the PBX or the ledger.
"""

from __future__ import annotations

import base64
import hashlib
from dataclasses import dataclass
from pathlib import Path

from archiver.names import Recording
from archiver.s3 import ObjectMetadata

__all__ = ["FileDigests", "digests", "quarantine_metadata"]

_MAX_REASON_CHARS = 200
_CHUNK_BYTES = 1024 * 1024


@dataclass(frozen=True, slots=True)
class FileDigests:
    sha256_hex: str
    md5_b64: str
    md5_hex: str


def digests(path: Path) -> FileDigests:
    """Return the SHA-256 and MD5 (base64 and hex) of the file at `path`. Raise `OSError`."""
    sha256 = hashlib.sha256()
    md5 = hashlib.md5()  # noqa: S324 -- S3's Content-MD5 and the rclone `md5` convention, not security
    with path.open("rb") as handle:
        while chunk := handle.read(_CHUNK_BYTES):
            sha256.update(chunk)
            md5.update(chunk)
    return FileDigests(
        sha256_hex=sha256.hexdigest(),
        md5_b64=base64.b64encode(md5.digest()).decode("ascii"),
        md5_hex=md5.hexdigest(),
    )


def quarantine_metadata(rec: Recording, found: FileDigests, reason: str) -> dict[str, str]:
    """The standard metadata of `rec` (with the original's checksums), plus `outcome: empty` and
    `reason` reduced to printable ASCII of at most 200 characters."""
    printable = "".join(ch if ch.isascii() and ch.isprintable() else "?" for ch in reason)
    return ObjectMetadata.for_recording(
        rec,
        source_sha256=found.sha256_hex,
        md5_b64=found.md5_b64,
        outcome="empty",
        reason=printable.strip()[:_MAX_REASON_CHARS] or "empty",
    ).headers()
