"""The Object Lock an upload carries: the store's retain-until date (the call's start plus
`[s3] retain_days`, in `retain_mode`) and, with `[s3] object_lock`, a legal hold when a hold
covers the recording. The pipeline asks here at upload. A call whose retain-until date has
already passed (an old one, backfilled) gets none."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from archiver.config import S3Config
from archiver.names import Recording
from archiver.s3 import ObjectLock
from archiver.state import Holds

__all__ = ["upload_lock"]


def upload_lock(cfg: S3Config, rec: Recording, object_key: str, holds: Holds) -> ObjectLock | None:
    """The lock for uploading `rec` to `object_key`, or None when the store is not asked to
    lock anything. Asks the state whether a hold covers it (a blocking call: from a coroutine
    run it on the state's threads)."""
    if not cfg.uses_object_lock:
        return None
    until = None if cfg.retain_days is None else rec.started_at + timedelta(days=cfg.retain_days)
    if until is not None and until <= datetime.now(UTC):
        until = None  # an old call (a backfill): its minimum has passed, nothing to lock
    held = cfg.object_lock and holds.covers(
        pbx=rec.pbx,
        caller=rec.caller,
        callee=rec.callee,
        key=object_key,
        recording_key=rec.key,
        day=rec.started_at.date(),
    )
    if until is None and not held:
        return None
    return ObjectLock(retain_until=until, mode=cfg.retain_mode, legal_hold=held)
