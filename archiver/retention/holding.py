"""Legal holds with the store: `archiver hold add` records the hold and, with `[s3]
object_lock`, sets the S3 legal hold on every archived object it covers (later uploads get it at
upload: `archiver.retention.lock`); `release` clears the S3 legal hold of the objects no other
active hold still covers."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date

import structlog

from archiver.s3 import S3Store, StoreError
from archiver.state import Hold, State

__all__ = ["HoldResult", "add_hold", "release_hold"]

log = structlog.get_logger(__name__)


@dataclass(frozen=True, slots=True)
class HoldResult:
    """The holds added or released, how many archived recordings they cover, on how many the
    store's legal hold was set or cleared (0 without `object_lock`), and what failed."""

    holds: tuple[Hold, ...]
    recordings: int
    store_changed: int
    failures: tuple[str, ...]


def add_hold(
    state: State,
    store: S3Store | None,
    case_ref: str,
    *,
    by: str,
    number: str | None = None,
    key: str | None = None,
    from_day: date | None = None,
    to_day: date | None = None,
    pbx: str | None = None,
    note: str | None = None,
) -> HoldResult:
    """Add a hold; with `store` (object_lock on), set the S3 legal hold on what it covers."""
    hold = state.holds.add(case_ref, by=by, number=number, key=key, from_day=from_day,
                           to_day=to_day, pbx=pbx, note=note)  # fmt: skip
    entries = state.holds.entries(hold)
    changed, failures = 0, []
    for entry in entries:
        if store is None:
            break
        try:
            store.set_legal_hold(entry.object_key, on=True)
        except StoreError as error:
            failures.append(f"{entry.object_key}: {error.reason}")
            continue
        changed += 1
    log.info("hold_added", case=case_ref, hold_id=hold.id, recordings=len(entries),
             store_legal_holds=changed, failures=len(failures))  # fmt: skip
    return HoldResult((hold,), len(entries), changed, tuple(failures))


def release_hold(state: State, store: S3Store | None, case_ref: str, *, by: str) -> HoldResult:
    """Release every active hold of `case_ref`; with `store`, clear the S3 legal hold of the
    recordings no other active hold covers. An unknown case releases nothing."""
    released = state.holds.release(case_ref, by=by)
    seen: dict[str, bool] = {}
    changed, failures = 0, []
    for hold in released:
        for entry in state.holds.entries(hold):
            if entry.object_key in seen:
                continue
            still = bool(state.holds.covering(entry))
            seen[entry.object_key] = still
            if store is None or still:
                continue
            try:
                store.set_legal_hold(entry.object_key, on=False)
            except StoreError as error:
                failures.append(f"{entry.object_key}: {error.reason}")
                continue
            changed += 1
    log.info("hold_released", case=case_ref, holds=len(released), recordings=len(seen),
             store_legal_holds_cleared=changed, failures=len(failures))  # fmt: skip
    return HoldResult(tuple(released), len(seen), changed, tuple(failures))
