"""The "Object Lock" check, when `[s3] object_lock` or `retain_days` is set: the bucket must
really enforce S3 Object Lock, because held recordings and the store's minimum rely on the store
refusing to delete them. Some S3-compatible stores accept the lock calls and delete anyway, so
this is a probe, not a question: write an object, put a legal hold on it, try to delete every
version of it; ✓ only when the store refused. The probe is then released and deleted (a legal
hold, unlike a retain-until date, can be lifted: the probe never outlives the check)."""

from __future__ import annotations

import os
from typing import Final

from archiver.config import S3Config
from archiver.doctor.result import Check, failed, passed, skipped
from archiver.s3 import S3Store, StoreError

__all__ = ["NAME", "check_object_lock"]

NAME: Final = "Object Lock"
_FIX_STORE: Final = (
    "use a store that enforces S3 Object Lock (AWS S3, or a release of your store that does), "
    "or set [s3] object_lock = false and remove retain_days (holds then live in the state only)"
)


def check_object_lock(store: S3Store, cfg: S3Config, key: str) -> Check:
    """Probe `store` at `key` (under the prefix's .doctor/ folder)."""
    if not cfg.uses_object_lock:
        return skipped(NAME, "not asked for ([s3] object_lock and retain_days unset)")
    try:
        enabled = store.object_lock_enabled()
    except StoreError as error:
        return failed(NAME, error.reason, "allow s3:GetBucketObjectLockConfiguration")
    if not enabled:
        return failed(
            NAME,
            f"bucket {cfg.bucket!r} does not have Object Lock enabled",
            "Object Lock can only be turned on when a bucket is created: create a new bucket "
            "with it (archiver doctor --create-bucket does, for the configured name) and move "
            "the recordings there",
        )
    try:
        store.put_bytes(key, os.urandom(64))
        store.set_legal_hold(key, on=True)
    except StoreError as error:
        _clean(store, key)
        return failed(NAME, f"could not lock a probe: {error.reason}",
                      "allow s3:PutObjectLegalHold and s3:PutObjectRetention")  # fmt: skip
    try:
        store.delete_every_version(key)
    except StoreError as error:
        if error.kind != "refused":
            _clean(store, key)
            return failed(NAME, f"the delete of a held probe failed: {error.reason}", _FIX_STORE)
    else:
        return failed(
            NAME,
            f"the store accepted a legal hold on s3://{cfg.bucket}/{key} and then deleted it "
            "anyway: it does not enforce Object Lock",
            _FIX_STORE,
        )
    left = _clean(store, key)
    mode = f"; uploads get retain-until = start + {cfg.retain_days} days ({cfg.retain_mode})"
    return passed(
        NAME,
        f"the store refused to delete a probe under legal hold (s3://{cfg.bucket}/{key})"
        + (mode if cfg.retain_days is not None else "")
        + ("" if left is None else f"; the probe could not be removed: {left}"),
    )


def _clean(store: S3Store, key: str) -> str | None:
    """Release and delete the probe; the reason if that failed."""
    try:
        if store.version_ids(key) or store.head(key) is not None:
            store.set_legal_hold(key, on=False)
            store.delete_every_version(key)
    except StoreError as error:
        return error.reason
    return None
