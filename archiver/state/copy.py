"""`archiver state copy`: move an installation's SQLite state into PostgreSQL.

Every table the two databases share is copied row by row in primary-key order, in batches, with
`ON CONFLICT DO NOTHING`: a row already in the target stays as it is there, so the copy can be
run again (after an interruption, or to pick up what a daemon still wrote to the old file) and
copies only what is missing. Leases are not copied (no worker holds anything in the new home).
Identity counters are moved past the copied ids, so the next call logged gets a fresh id.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, Final

from archiver.state.db import Param, SqliteDb
from archiver.state.postgres import PostgresDb

__all__ = ["TableCopy", "copy_state"]

# Parents before children (call_events refer to autocalls); tables added later follow by name.
_ORDER: Final = ("recordings", "autocalls", "call_events")
# catalogue_hours is kept by the target's own triggers while the catalogue is copied.
_NOT_COPIED_TABLES: Final = frozenset({"schema_migrations", "schema_version", "catalogue_hours"})
_NOT_COPIED_COLUMNS: Final = frozenset({"lease_owner", "lease_until"})
_BATCH_ROWS: Final = 2000


@dataclass(frozen=True, slots=True)
class TableCopy:
    """What copying one table did: rows in the source, rows added to the target, rows the
    target already had."""

    table: str
    source_rows: int
    copied: int

    @property
    def already_there(self) -> int:
        return self.source_rows - self.copied


def copy_state(source: SqliteDb, target: PostgresDb) -> list[TableCopy]:
    """Copy every shared table from `source` into `target` (whose schema is migrated); return
    what was copied, table by table."""
    shared = sorted(filter(_plain, _sqlite_tables(source) & _pg_tables(target)), key=_rank)
    return [_copy_table(source, target, table) for table in shared]


def _plain(name: str) -> bool:
    """Only plain lower-case identifiers reach the SQL text (names come from the catalogues
    of the two databases, never from a user, but a quoted name must not break out anyway)."""
    return re.fullmatch(r"[a-z_][a-z0-9_]{0,62}", name) is not None


def _rank(table: str) -> tuple[int, str]:
    return (_ORDER.index(table) if table in _ORDER else len(_ORDER), table)


def _sqlite_tables(db: SqliteDb) -> set[str]:
    rows = db.execute("SELECT name FROM sqlite_master WHERE type = 'table'").rows
    return {str(row[0]) for row in rows if not str(row[0]).startswith("sqlite_")} - set(
        _NOT_COPIED_TABLES
    )


def _pg_tables(db: PostgresDb) -> set[str]:
    rows = db.execute(
        "SELECT table_name FROM information_schema.tables"
        " WHERE table_schema = current_schema() AND table_type = 'BASE TABLE'"
    ).rows
    return {str(row[0]) for row in rows} - set(_NOT_COPIED_TABLES)


def _copy_table(source: SqliteDb, target: PostgresDb, table: str) -> TableCopy:
    source_columns = [str(row[1]) for row in source.execute(f'PRAGMA table_info("{table}")').rows]
    target_columns = {
        str(row[0])
        for row in target.execute(
            "SELECT column_name FROM information_schema.columns"
            " WHERE table_schema = current_schema() AND table_name = ?",
            (table,),
        ).rows
    }
    columns = [
        c
        for c in source_columns
        if c in target_columns and c not in _NOT_COPIED_COLUMNS and _plain(c)
    ]
    names = ", ".join(f'"{c}"' for c in columns)
    marks = ", ".join("?" for _ in columns)
    insert = f'INSERT INTO "{table}" ({names}) VALUES ({marks}) ON CONFLICT DO NOTHING'
    before = _count(target, table)
    source_rows = 0
    for batch in _batches(source, table, names):
        target.executemany(insert, batch)
        source_rows += len(batch)
    copied = _count(target, table) - before
    _advance_identities(target, table)
    return TableCopy(table=table, source_rows=source_rows, copied=copied)


def _batches(source: SqliteDb, table: str, names: str) -> Iterator[list[list[Param]]]:
    """The source's rows in rowid order, `_BATCH_ROWS` at a time (memory stays flat)."""
    last = -(2**63)
    while True:
        rows = source.execute(
            f'SELECT rowid, {names} FROM "{table}" WHERE rowid > ? ORDER BY rowid LIMIT ?',
            (last, _BATCH_ROWS),
        ).rows
        if not rows:
            return
        last = int(rows[-1][0])
        yield [list(_values(row[1:])) for row in rows]


def _values(row: tuple[Any, ...]) -> Iterator[Param]:
    yield from row


def _count(db: PostgresDb, table: str) -> int:
    row = db.execute(f'SELECT count(*) FROM "{table}"').one()
    return 0 if row is None else int(row[0])


def _advance_identities(db: PostgresDb, table: str) -> None:
    """Move each identity column's sequence past the largest id now in the table."""
    identities = db.execute(
        "SELECT column_name FROM information_schema.columns WHERE table_schema = current_schema()"
        " AND table_name = ? AND is_identity = 'YES'",
        (table,),
    ).rows
    for (column,) in filter(lambda row: _plain(str(row[0])), identities):
        db.execute(
            f"SELECT setval(pg_get_serial_sequence(?, ?),"
            f' (SELECT coalesce(max("{column}"), 0) + 1 FROM "{table}"), false)',
            (table, str(column)),
        )
