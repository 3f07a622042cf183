"""`archiver doctor`'s "Object Lock" line: a probe written, held and deleted on SeaweedFS and on
moto, ✓ only when the store refused the delete; a bucket without Object Lock and a store that
accepts a hold and deletes anyway are ✗ with the fix; no line unless the lock is asked for."""

from __future__ import annotations

import uuid

from archiver.config import S3Config
from archiver.doctor.object_lock import check_object_lock
from archiver.doctor.s3 import check_s3
from archiver.s3 import S3Store


def _probe_key(cfg: S3Config) -> str:
    return f"{cfg.prefix}/.doctor/{uuid.uuid4().hex}.lock"


def test_a_store_that_enforces_object_lock_passes(locked_s3: S3Config) -> None:
    checks = check_s3(locked_s3)
    lock = checks[-1]
    assert lock.name == "Object Lock" and lock.ok, lock
    assert "refused to delete a probe under legal hold" in lock.detail
    assert all(check.ok for check in checks)
    store = S3Store(locked_s3)
    leftovers = list(store.iter_objects(f"{locked_s3.prefix}/.doctor/"))
    assert leftovers == []  # the probes are released and every version deleted


def test_a_bucket_without_object_lock_fails_with_the_fix(
    s3_env: dict[str, str], s3_config: S3Config
) -> None:
    cfg = s3_config.model_copy(update={"retain_days": 1825})
    check = check_object_lock(S3Store(cfg), cfg, _probe_key(cfg))
    assert check.status == "fail" and "does not have Object Lock enabled" in check.detail
    assert "--create-bucket" in check.fix


class _AcceptsAndIgnores(S3Store):
    """A store that answers the legal-hold call and does not enforce it (reported against some
    S3-compatible stores; cannot be produced with SeaweedFS 4.48 or moto, which enforce it)."""

    def set_legal_hold(self, key: str, *, on: bool) -> int:
        return 1


def test_a_store_that_deletes_a_held_object_fails(locked_s3: S3Config) -> None:
    store = _AcceptsAndIgnores(locked_s3)
    key = _probe_key(locked_s3)
    check = check_object_lock(store, locked_s3, key)
    assert check.status == "fail" and "deleted it anyway" in check.detail
    assert "enforces S3 Object Lock" in check.fix
    assert store.head(key) is None


def test_no_line_unless_the_lock_is_asked_for(s3_env: dict[str, str], s3_config: S3Config) -> None:
    assert "Object Lock" not in [check.name for check in check_s3(s3_config)]
