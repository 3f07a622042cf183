"""Each day's last access-log hash, written to the bucket (`audit/chain/YYYY-MM-DD.json`, UTC
days), so that someone with the database alone cannot rewrite history unnoticed: a rewritten
chain verifies on its own, but no longer ends each day on the hash the bucket kept, and
deleting the newest rows leaves the chain shorter than the last anchor.

Where the bucket has Object Lock ([s3] object_lock or retain_days), each anchor gets a legal hold
(no end date: the anchors are kept as long as the log is) and, with retain_days, a retain-until
date too, so that deleting or overwriting an anchor is refused by the store itself.
`archiver audit anchor` writes the anchors of every finished day that has none (a daily timer,
systemd/archiver-audit.timer, runs it); `archiver audit verify` checks the chain against every
anchor it finds.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from typing import Final

from archiver.s3 import S3Store
from archiver.state import AccessLog

__all__ = [
    "ANCHOR_PREFIX",
    "AnchorLock",
    "AnchorProblem",
    "DayAnchor",
    "check_anchors",
    "write_anchors",
]

ANCHOR_PREFIX: Final = "audit/chain/"
_TABLE: Final = "access_log"
_MAX_ANCHOR_BYTES: Final = 64 * 1024


@dataclass(frozen=True, slots=True)
class DayAnchor:
    """The access log at the end of `day` (UTC): its last row's id and hash."""

    day: date
    last_id: int
    last_hash: str

    @property
    def key(self) -> str:
        return f"{ANCHOR_PREFIX}{self.day.isoformat()}.json"

    def to_json(self) -> bytes:
        body = {
            "table": _TABLE,
            "day": self.day.isoformat(),
            "timezone": "UTC",
            "last_id": self.last_id,
            "last_hash": self.last_hash,
            "written_at": datetime.now(UTC).isoformat(timespec="seconds"),
        }
        return (json.dumps(body, indent=2) + "\n").encode()

    @classmethod
    def from_json(cls, data: bytes) -> DayAnchor:
        body = json.loads(data)
        return cls(date.fromisoformat(body["day"]), int(body["last_id"]), str(body["last_hash"]))


@dataclass(frozen=True, slots=True)
class AnchorLock:
    """How an anchor is protected in an Object Lock bucket: a legal hold, and a retain-until
    date `retain_days` from now in `mode` when given."""

    retain_days: int | None = None
    mode: str = "GOVERNANCE"

    def apply(self, store: S3Store, key: str) -> None:
        store.set_legal_hold(key, on=True)
        if self.retain_days is not None:
            until = datetime.now(UTC) + timedelta(days=self.retain_days)
            store.set_retention(key, until, self.mode)


@dataclass(frozen=True, slots=True)
class AnchorProblem:
    """An anchor the database no longer agrees with, and why."""

    day: date
    reason: str


def _end_of(day: date) -> datetime:
    return datetime.combine(day + timedelta(days=1), time(), UTC)


def _anchored_days(store: S3Store) -> set[date]:
    days = set()
    for info in store.iter_objects(ANCHOR_PREFIX):
        stem = info.key.removeprefix(ANCHOR_PREFIX).removesuffix(".json")
        try:
            days.add(date.fromisoformat(stem))
        except ValueError:
            continue
    return days


def write_anchors(
    log: AccessLog,
    store: S3Store,
    *,
    today: date | None = None,
    lock: AnchorLock | None = None,
) -> list[DayAnchor]:
    """Write the anchor of every finished UTC day from the log's first row to yesterday that
    the bucket does not have yet, locked as `lock` says; return those written (oldest first)."""
    first = log.first_at()
    if first is None:
        return []
    today = today or datetime.now(UTC).date()
    have = _anchored_days(store)
    written = []
    day = first.date()
    while day < today:
        if day not in have:
            last = log.last_before(_end_of(day))
            if last is not None:
                anchor = DayAnchor(day, *last)
                store.put_bytes(anchor.key, anchor.to_json())
                if lock is not None:
                    lock.apply(store, anchor.key)
                written.append(anchor)
        day += timedelta(days=1)
    return written


def check_anchors(log: AccessLog, store: S3Store) -> tuple[int, list[AnchorProblem]]:
    """Compare every anchor in the bucket with the database: how many were checked, and each
    one whose row is gone (rows deleted) or carries another hash (history rewritten)."""
    problems = []
    checked = 0
    for day in sorted(_anchored_days(store)):
        anchor = DayAnchor.from_json(
            store.get_bytes(f"{ANCHOR_PREFIX}{day.isoformat()}.json", _MAX_ANCHOR_BYTES)
        )
        checked += 1
        stored = log.hash_of(anchor.last_id)
        if stored is None:
            problems.append(AnchorProblem(day, f"row {anchor.last_id} is gone (rows deleted)"))
        elif stored != anchor.last_hash:
            problems.append(AnchorProblem(
                day, f"row {anchor.last_id} no longer ends the day with the hash the bucket kept"
                " (history rewritten)"))  # fmt: skip
    return checked, problems
