"""The S3 checks: credentials found, the bucket reachable (or created, with `--create-bucket`),
a probe object under `{prefix}/.doctor/` written with the configured storage class and SSE, read
back, compared and deleted, a one-part multipart upload permitted, and (only with object_lock
or retain_days) that the store enforces Object Lock (archiver.doctor.object_lock). Blocking
(boto3): run it in a thread. The access key is shown by its first four characters only; the
secret never."""

from __future__ import annotations

import os
import uuid
from typing import Final

import boto3

from archiver.config import S3Config
from archiver.doctor.object_lock import NAME as OBJECT_LOCK
from archiver.doctor.object_lock import check_object_lock
from archiver.doctor.result import Check, failed, passed, skipped
from archiver.s3 import S3Store, StoreError

__all__ = ["check_s3"]

_PROBE_BYTES: Final = 4096
_NAMES: Final = ("credentials", "bucket", "probe object", "multipart upload")


def check_s3(cfg: S3Config, *, create_bucket: bool = False) -> list[Check]:
    """Every S3 check, in order; a failed step skips those after it."""
    names = [f"s3: {name}" for name in _NAMES]
    if cfg.uses_object_lock:
        names.append(OBJECT_LOCK)
    checks = [_credentials(names[0])]

    def rest(why: str) -> list[Check]:
        return checks + [skipped(name, why) for name in names[len(checks) :]]

    if not checks[-1].ok:
        return rest("no credentials")
    store = S3Store(cfg)
    checks.append(_bucket(names[1], store, cfg, create=create_bucket))
    if not checks[-1].ok:
        return rest("the bucket is not reachable")
    key = f"{cfg.prefix}/.doctor/{uuid.uuid4().hex}"
    checks.append(_round_trip(names[2], store, cfg, key + ".probe", multipart=False))
    checks.append(_round_trip(names[3], store, cfg, key + ".multipart", multipart=True))
    if cfg.uses_object_lock:
        checks.append(check_object_lock(store, cfg, key + ".lock"))
    return checks


def _credentials(name: str) -> Check:
    found = boto3.session.Session().get_credentials()
    if found is None:
        return failed(
            name,
            "boto3 found no credentials",
            "set AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY, a profile, or an instance "
            "role (under systemd: the s3-credentials credential)",
        )
    frozen = found.get_frozen_credentials()
    shown = (frozen.access_key or "")[:4]
    return passed(name, f"access key {shown}... from {found.method}")


def _bucket(name: str, store: S3Store, cfg: S3Config, *, create: bool) -> Check:
    where = cfg.endpoint_url or "AWS"
    try:
        store.check_access()
    except StoreError as error:
        missing = "404" in error.reason or "NoSuchBucket" in error.reason
        if missing and create:
            return _create(name, store, cfg)
        fix = (
            f"create it: archiver doctor --create-bucket (region {cfg.region or 'us-east-1'})"
            if missing
            else "check s3.endpoint_url, s3.region, the network and the credentials"
        )
        return failed(name, error.reason, fix)
    return passed(name, f"bucket {cfg.bucket!r} at {where} answers")


def _create(name: str, store: S3Store, cfg: S3Config) -> Check:
    try:
        store.create_bucket()
        store.check_access()
    except StoreError as error:
        return failed(
            name,
            f"could not create it: {error.reason}",
            "create it with your provider's console or CLI",
        )
    region = cfg.region or "us-east-1"
    return passed(name, f"bucket {cfg.bucket!r} created in region {region}")


def _round_trip(name: str, store: S3Store, cfg: S3Config, key: str, *, multipart: bool) -> Check:
    data = os.urandom(_PROBE_BYTES)
    options = f"storage class {cfg.storage_class or 'default'}, SSE {cfg.sse or 'none'}"
    try:
        store.put_bytes(key, data, multipart=multipart)
        try:
            back = store.get_bytes(key)
        finally:
            # A bucket with Object Lock keeps versions: a plain DELETE would leave the probe.
            if cfg.uses_object_lock:
                store.delete_every_version(key)
            else:
                store.delete(key)
    except StoreError as error:
        fix = (
            "allow s3:PutObject/GetObject/DeleteObject under the prefix"
            if not multipart
            else "allow multipart uploads (s3:PutObject, s3:AbortMultipartUpload); MP3s over "
            "16 MiB use them"
        )
        return failed(name, error.reason, fix)
    if back != data:
        return failed(
            name,
            f"s3://{cfg.bucket}/{key} read back {len(back)} B that differ",
            "the store changes what it is given: check its settings",
        )
    what = "one-part multipart upload" if multipart else f"{_PROBE_BYTES} B"
    return passed(
        name, f"{what} written ({options}), read back, compared, deleted: s3://{cfg.bucket}/{key}"
    )
