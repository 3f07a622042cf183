"""What the state knows about each archived object's bytes, to check them against the bucket:
its size (catalogue), the MD5 of the MP3 and the SHA-256 of the PBX's original (ledger).

`archiver verify` walks these in key order (batches, resumable by the last key), the court
export and the web's whole-file streams compare what they read against them. The state and the
bucket are separate systems: an object changed in the bucket no longer matches what the state
wrote when it was verified.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Final

from archiver.state.db import Db, Param

__all__ = ["Expected", "Fixity"]

_SELECT: Final = (
    "SELECT c.object_key, c.size_bytes, r.mp3_md5, r.source_sha256, c.started_utc_s"
    " FROM catalogue AS c LEFT JOIN recordings AS r ON r.key = c.recording_key"
)
_MAX_KEYS_PER_QUERY: Final = 500


@dataclass(frozen=True, slots=True)
class Expected:
    """One archived object as the state recorded it. `md5_b64` is the MP3's MD5 (base64, as
    rclone stores it), None for rows moved from a ledger without it; `source_sha256` the
    original's."""

    object_key: str
    size_bytes: int | None
    md5_b64: str | None
    source_sha256: str | None


def _expected(row: Sequence[object]) -> Expected:
    key, size, md5, source, _ = row
    return Expected(
        object_key=str(key),
        size_bytes=None if size is None else int(size),  # type: ignore[call-overload]
        md5_b64=None if md5 is None else str(md5),
        source_sha256=None if source is None else str(source),
    )


class Fixity:
    """Reads of `Expected` over the catalogue joined with the ledger (either backend)."""

    def __init__(self, db: Db) -> None:
        self._db = db

    def batch(
        self, *, since: datetime | None = None, after_key: str = "", limit: int = 500
    ) -> list[Expected]:
        """Up to `limit` objects in key order after `after_key`, of calls that started at or
        after `since` (aware)."""
        clauses: list[str] = ["c.object_key > ?"]
        params: list[Param] = [after_key]
        if since is not None:
            clauses.append("c.started_utc_s >= ?")
            params.append(int(since.timestamp()))
        rows = self._db.execute(
            f"{_SELECT} WHERE {' AND '.join(clauses)} ORDER BY c.object_key LIMIT ?",
            (*params, limit),
        ).rows
        return [_expected(row) for row in rows]

    def of_keys(self, keys: Sequence[str]) -> dict[str, Expected]:
        """The `Expected` of each of `keys` the catalogue has."""
        found: dict[str, Expected] = {}
        for start in range(0, len(keys), _MAX_KEYS_PER_QUERY):
            chunk = list(keys[start : start + _MAX_KEYS_PER_QUERY])
            marks = ", ".join("?" * len(chunk))
            rows = self._db.execute(f"{_SELECT} WHERE c.object_key IN ({marks})", chunk).rows
            found.update((str(row[0]), _expected(row)) for row in rows)
        return found
