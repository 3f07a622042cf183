"""The store's lifecycle primitives on SeaweedFS and on moto, both with Object Lock enabled:
every version deleted, legal holds and retain-until dates set at upload and afterwards, and a
delete of a held or retained object refused by the store itself."""

from __future__ import annotations

import base64
import hashlib
import os
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from archiver.config import S3Config
from archiver.s3 import ObjectLock, S3Store, StoreError


def _put(
    store: S3Store, tmp: Path, key: str, lock: ObjectLock | None = None, data: bytes = b""
) -> bool:
    """Upload `data` (default: new random bytes) to `key`; return whether it was already
    there."""
    data = data or b"ID3" + os.urandom(2000)
    path = tmp / "a.mp3"
    path.write_bytes(data)
    digest = hashlib.md5(data, usedforsecurity=False)
    md5_b64 = base64.b64encode(digest.digest()).decode()
    metadata = {"source-sha256": hashlib.sha256(data).hexdigest(), "md5": md5_b64}
    stored = store.put_verified(
        path, key, metadata, md5_b64=md5_b64, md5_hex=digest.hexdigest(), lock=lock
    )
    return stored.already_present


def test_the_bucket_says_it_locks(locked_s3: S3Config, s3_config: S3Config) -> None:
    assert S3Store(locked_s3).object_lock_enabled()
    assert not S3Store(s3_config).object_lock_enabled()  # a plain SeaweedFS bucket


def test_every_version_is_deleted(locked_s3: S3Config, tmp_path: Path) -> None:
    store = S3Store(locked_s3)
    _put(store, tmp_path, "r/a.mp3")
    store.put_bytes("r/a.mp3", b"second version")  # a second version of the same key
    store.delete("r/a.mp3")  # a plain DELETE: only a delete marker in a versioned bucket
    assert len(store.version_ids("r/a.mp3")) == 3  # two versions and the marker
    assert store.delete_every_version("r/a.mp3") == 3
    assert store.version_ids("r/a.mp3") == []
    assert store.head("r/a.mp3") is None
    assert store.delete_every_version("r/a.mp3") == 0  # already gone: nothing to do


def test_a_plain_bucket_loses_its_object_too(s3_env: dict[str, str], s3_config: S3Config,
                                             tmp_path: Path) -> None:  # fmt: skip
    store = S3Store(s3_config)
    _put(store, tmp_path, "r/b.mp3")
    assert store.delete_every_version("r/b.mp3") == 1
    assert store.head("r/b.mp3") is None


def test_a_held_object_cannot_be_deleted_until_released(
    locked_s3: S3Config, tmp_path: Path
) -> None:
    store = S3Store(locked_s3)
    _put(store, tmp_path, "r/held.mp3", ObjectLock(legal_hold=True))
    assert store.lock_state("r/held.mp3").legal_hold
    with pytest.raises(StoreError) as refused:
        store.delete_every_version("r/held.mp3")
    assert refused.value.kind == "refused"
    assert store.head("r/held.mp3") is not None  # the store refused: the bytes are there
    assert store.set_legal_hold("r/held.mp3", on=False) == 1
    assert not store.lock_state("r/held.mp3").legal_hold
    assert store.delete_every_version("r/held.mp3") == 1


def test_a_hold_set_after_the_upload_is_enforced(locked_s3: S3Config, tmp_path: Path) -> None:
    store = S3Store(locked_s3)
    _put(store, tmp_path, "r/later.mp3")
    store.set_legal_hold("r/later.mp3", on=True)
    with pytest.raises(StoreError):
        store.delete_every_version("r/later.mp3")
    store.set_legal_hold("r/later.mp3", on=False)
    store.delete_every_version("r/later.mp3")


def test_a_retain_until_date_is_set_at_upload_and_enforced(
    locked_s3: S3Config, tmp_path: Path
) -> None:
    store = S3Store(locked_s3)
    until = datetime.now(UTC).replace(microsecond=0) + timedelta(days=2)
    _put(store, tmp_path, "r/kept.mp3", ObjectLock(retain_until=until, mode="GOVERNANCE"))
    state = store.lock_state("r/kept.mp3")
    assert state.mode == "GOVERNANCE"
    assert state.retain_until is not None and abs(state.retain_until - until) < timedelta(seconds=1)
    with pytest.raises(StoreError) as refused:
        store.delete_every_version("r/kept.mp3")
    assert refused.value.kind == "refused"
    assert store.head("r/kept.mp3") is not None


def test_an_upload_found_already_there_gets_its_lock(locked_s3: S3Config, tmp_path: Path) -> None:
    """A crash between the upload and the ledger write: the next attempt finds the object and
    still sets the hold it must carry."""
    store = S3Store(locked_s3)
    data = b"ID3" + os.urandom(3000)
    assert not _put(store, tmp_path, "r/again.mp3", data=data)
    assert _put(store, tmp_path, "r/again.mp3", ObjectLock(legal_hold=True), data=data)
    assert store.lock_state("r/again.mp3").legal_hold
    store.set_legal_hold("r/again.mp3", on=False)
