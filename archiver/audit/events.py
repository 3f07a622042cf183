"""The access log as people read it: rows in local time, CSV and JSON (the audit page and
`archiver audit` give the same columns)."""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable
from typing import Any, Final
from zoneinfo import ZoneInfo

from archiver.state import AccessEvent

__all__ = ["EVENT_COLUMNS", "event_record", "events_csv"]

EVENT_COLUMNS: Final = (
    "id",
    "at",
    "username",
    "action",
    "outcome",
    "source",
    "object_key",
    "object_keys",
    "byte_range",
    "item_count",
    "detail",
)


def event_record(event: AccessEvent, tz: ZoneInfo) -> dict[str, Any]:
    """One event with its time in `tz` (ISO 8601 with the offset)."""
    return {
        "id": event.event_id,
        "at": event.at.astimezone(tz).isoformat(timespec="seconds"),
        "username": event.username,
        "action": event.action,
        "outcome": event.outcome,
        "source": event.source,
        "object_key": event.object_key,
        "object_keys": list(event.object_keys),
        "byte_range": event.byte_range,
        "item_count": event.item_count,
        "detail": None if event.detail is None else event.detail.strip(),
    }


def events_csv(events: Iterable[AccessEvent], tz: ZoneInfo) -> str:
    out = io.StringIO(newline="")
    writer = csv.writer(out, lineterminator="\r\n")
    writer.writerow(EVENT_COLUMNS)
    for event in events:
        record = event_record(event, tz)
        record["object_keys"] = " ".join(record["object_keys"])
        writer.writerow([_cell(record[name]) for name in EVENT_COLUMNS])
    return out.getvalue()


def _cell(value: object) -> str:
    text = "" if value is None else str(value)
    # Names and ranges came from clients: never let a spreadsheet run one as a formula.
    return "'" + text if text[:1] in ("=", "+", "-", "@") else text
