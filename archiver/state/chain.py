"""The hash chain that makes an append-only log tamper-evident (the access log, the destruction
log): every row carries the SHA-256 of its content and of the row before it, so a row changed,
deleted or inserted in the database breaks the chain at that row.

The contract, shared by every chained table:
- columns `prev_hash TEXT NOT NULL` and `row_hash TEXT NOT NULL` beside the row's content columns
  and its integer `id` (the chain's order);
- `row_hash = sha256(prev_hash + "\\n" + canonical(content))`, hex, where `content` maps each
  content column (not `id`, `prev_hash`, `row_hash`) to its value and `canonical` is JSON with
  sorted keys, no spaces, UTF-8, and every number written as `float(value).hex()` (an integer
  and the same REAL read back from SQLite or PostgreSQL hash alike);
- the first row's `prev_hash` is `GENESIS` (64 zeros);
- rows are appended only through `append`, which reads the last hash and inserts under the
  table's write lock (`Db.atomic`), so two processes never chain from the same row.
Deleting the newest rows leaves a shorter chain that still verifies: the day's last hash written
outside the database (the bucket) is what catches that.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Final

from archiver.state.db import Db, Execute, Param

__all__ = [
    "GENESIS",
    "ChainBreak",
    "ChainReport",
    "append",
    "append_within",
    "row_hash",
    "verify",
]

GENESIS: Final = "0" * 64
_BATCH_ROWS: Final = 5_000


def _canonical_value(value: Param) -> str | float | int | None:
    if value is None or isinstance(value, str):
        return value
    if isinstance(value, bool):
        raise TypeError("a chained value may not be a bool: store 0 or 1")
    if isinstance(value, int | float):
        return float(value).hex()
    raise TypeError(f"a chained value must be text, a number or NULL, not {type(value).__name__}")


def row_hash(prev_hash: str, content: Mapping[str, Param]) -> str:
    """The hash of a row whose content is `content`, chained to `prev_hash`."""
    canonical = json.dumps(
        {name: _canonical_value(value) for name, value in content.items()},
        sort_keys=True,
        separators=(",", ":"),
        ensure_ascii=False,
    )
    return hashlib.sha256(f"{prev_hash}\n{canonical}".encode()).hexdigest()


def append(db: Db, table: str, content: Mapping[str, Param]) -> str:
    """Insert one row of `content` into `table` (a fixed name of ours, never user input),
    chained to the table's last row; return its hash."""
    return db.atomic(lambda execute: append_within(execute, table, content), lock=table)


def append_within(execute: Execute, table: str, content: Mapping[str, Param]) -> str:
    """`append` as one step of a larger `Db.atomic` transaction, which must hold the lock named
    `table` (e.g. the destruction log's row written with the state it records, all or
    nothing); return the row's hash."""
    columns = list(content)
    last = execute(f"SELECT row_hash FROM {table} ORDER BY id DESC LIMIT 1").one()  # noqa: S608
    prev = GENESIS if last is None else str(last[0])
    digest = row_hash(prev, content)
    marks = ", ".join("?" for _ in range(len(columns) + 2))
    execute(
        f"INSERT INTO {table} ({', '.join(columns)}, prev_hash, row_hash)"  # noqa: S608
        f" VALUES ({marks})",
        (*content.values(), prev, digest),
    )
    return digest


@dataclass(frozen=True, slots=True)
class ChainBreak:
    """The first row where the chain does not hold: `row_id` (None: the anchor) and why
    (`changed`: its content no longer gives its hash; `deleted or inserted`: its prev_hash is not
    the hash of the row before it)."""

    row_id: int | None
    reason: str


@dataclass(frozen=True, slots=True)
class ChainReport:
    """What `verify` found: rows walked, the last row's id and hash, the first break if any."""

    rows: int
    last_id: int | None
    last_hash: str
    first_break: ChainBreak | None

    @property
    def intact(self) -> bool:
        return self.first_break is None


def verify(db: Db, table: str, content_columns: Sequence[str]) -> ChainReport:
    """Walk `table`'s chain in `id` order, in batches, and report the first broken row."""
    select = ", ".join(["id", *content_columns, "prev_hash", "row_hash"])
    prev, last_id, count = GENESIS, 0, 0
    while True:
        rows = db.execute(
            f"SELECT {select} FROM {table} WHERE id > ? ORDER BY id LIMIT ?",  # noqa: S608
            (last_id, _BATCH_ROWS),
        ).rows
        if not rows:
            return ChainReport(count, last_id or None, prev, None)
        for row in rows:
            row_id, stored_prev, stored_hash = int(row[0]), str(row[-2]), str(row[-1])
            content = dict(zip(content_columns, row[1:-2], strict=True))
            if stored_prev != prev:
                return ChainReport(count, row_id, prev, ChainBreak(row_id, "deleted or inserted"))
            if row_hash(stored_prev, content) != stored_hash:
                return ChainReport(count, row_id, prev, ChainBreak(row_id, "changed"))
            prev, last_id, count = stored_hash, row_id, count + 1
