"""The store stage: put one MP3 into S3 exactly once, and prove it arrived intact.

Knows S3, not the PBX. The identity of an archived object is its source: the `source-sha256`
metadata (SHA-256 of the file downloaded from the PBX). Before uploading, `put_verified` looks at
the key: the same source already there means a crash came between upload and ledger write, and the
upload is skipped; a different source there is a conflict and is never overwritten. After
uploading, it reads the object's size, ETag and `md5` metadata back.

Retries are not made here, not even by botocore (the daemon wraps calls with stamina): every S3
failure becomes a `StoreError` whose `transient` says whether trying again can help, and whose
`reason` is safe to log (no credentials, no request signatures).

The object format (key, metadata) is `archiver.s3.objects`.
"""

from __future__ import annotations

import base64
import hashlib
import re
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import MappingProxyType
from typing import TYPE_CHECKING, Any

import boto3
from boto3.exceptions import S3UploadFailedError
from boto3.s3.transfer import TransferConfig
from botocore.config import Config
from botocore.exceptions import (
    ClientError,
    ConnectionClosedError,
    ConnectTimeoutError,
    EndpointConnectionError,
    HTTPClientError,
    IncompleteReadError,
    NoCredentialsError,
    PartialCredentialsError,
    ReadTimeoutError,
    SSLError,
)
from botocore.exceptions import ConnectionError as BotoConnectionError

from archiver.config import S3Config
from archiver.errors import ArchiverError, Kind
from archiver.logs import register_secret
from archiver.s3.objects import CONTENT_TYPE, ObjectInfo

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client

__all__ = [
    "ConflictError",
    "LockState",
    "ObjectInfo",
    "ObjectLock",
    "ObjectMissing",
    "ObjectReader",
    "RangeNotSatisfiable",
    "S3Store",
    "StoreError",
    "StoredObject",
    "VerifyError",
    "default_transfer_config",
]

_MIB = 1024 * 1024
_SHA256_RE = re.compile(r"[0-9a-f]{64}")
_MD5_HEX_RE = re.compile(r"[0-9a-f]{32}")

_MISSING_CODES = frozenset({"404", "NoSuchKey", "NotFound"})
_TRANSIENT_CODES = frozenset(
    {
        "SlowDown", "RequestTimeout", "RequestTimeoutException", "InternalError",
        "ServiceUnavailable", "Throttling", "ThrottlingException", "ThrottledException",
        "RequestThrottled", "RequestLimitExceeded", "TooManyRequests", "TooManyRequestsException",
        "OperationAborted",
        # The bytes were damaged on the way or the upload was cut short: sending again can work.
        "BadDigest", "IncompleteBody", "XAmzContentSHA256Mismatch", "InvalidDigest",
        # A multipart upload aborted under us (e.g. by abort_stale_multipart): start again.
        "NoSuchUpload",
    }
)  # fmt: skip
_TRANSIENT_STATUS = frozenset({408, 429})
_TIMEOUT_CODES = frozenset({"RequestTimeout", "RequestTimeoutException"})
_THROTTLE_CODES = frozenset(
    {
        "SlowDown", "Throttling", "ThrottlingException", "ThrottledException", "RequestThrottled",
        "RequestLimitExceeded", "TooManyRequests", "TooManyRequestsException",
    }
)  # fmt: skip
_REFUSED_CODES = frozenset({"SignatureDoesNotMatch", "InvalidAccessKeyId", "AccessDenied", "403"})
_NOT_FOUND_CODES = frozenset({"NoSuchBucket", "404"})
_MAX_SERVER_MESSAGE_CHARS = 200
_NO_ARGS: Mapping[str, Any] = MappingProxyType({})
_URL_USERINFO_RE = re.compile(r"(?<=://)[^/@\s]+@")


class StoreError(ArchiverError):
    """Storing failed (see `ArchiverError` for `reason`, `transient` and `kind`)."""


class VerifyError(StoreError):
    """The object read back after upload does not match what was sent; a retry re-uploads."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason, transient=True, kind="mismatch")


class ConflictError(StoreError):
    """An object from a different source is at the key; it is never overwritten."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason, transient=False, kind="conflict")


class ObjectMissing(StoreError):
    """There is no object at the key."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason, transient=False, kind="not_found")


class RangeNotSatisfiable(StoreError):
    """The byte range asked for starts past the object's end; `total_bytes` is its size."""

    def __init__(self, reason: str, total_bytes: int) -> None:
        super().__init__(reason, transient=False, kind="other")
        self.total_bytes = total_bytes


@dataclass(frozen=True, slots=True)
class ObjectReader:
    """An object (or one byte range of it) being read from S3, chunk by chunk.

    `first_byte`..`last_byte` (inclusive) of `total_bytes` are what `read` returns; `partial` is
    True when a range was asked for. Blocking: call `read` and `close` in a thread.
    """

    key: str
    total_bytes: int
    first_byte: int
    last_byte: int
    partial: bool
    content_type: str | None
    _body: Any
    _where: str

    @property
    def length_bytes(self) -> int:
        return self.last_byte - self.first_byte + 1 if self.total_bytes else 0

    def read(self, max_bytes: int) -> bytes:
        """Up to `max_bytes` of the next bytes; b"" at the end. Raise `StoreError` if the
        connection to S3 breaks."""
        with _translated("read", self._where):
            data: bytes = self._body.read(max_bytes)
        return data

    def close(self) -> None:
        self._body.close()


@dataclass(frozen=True, slots=True)
class StoredObject:
    key: str
    size_bytes: int
    md5_b64: str
    etag: str  # without quotes; "<hex>-N" for a multipart upload
    already_present: bool


@dataclass(frozen=True, slots=True)
class ObjectLock:
    """The S3 Object Lock settings an upload carries: a retain-until date (aware) in `mode`
    (GOVERNANCE or COMPLIANCE), and a legal hold. The bucket must have Object Lock enabled."""

    retain_until: datetime | None = None
    mode: str = "GOVERNANCE"
    legal_hold: bool = False

    def put_args(self) -> dict[str, Any]:
        """The PutObject (and upload_file ExtraArgs) parameters for this lock."""
        args: dict[str, Any] = {}
        if self.retain_until is not None:
            args["ObjectLockMode"] = self.mode
            args["ObjectLockRetainUntilDate"] = self.retain_until
        if self.legal_hold:
            args["ObjectLockLegalHoldStatus"] = "ON"
        return args


@dataclass(frozen=True, slots=True)
class LockState:
    """What the store says about one object's lock: its legal hold, its retention mode and
    retain-until date (None where there is none)."""

    legal_hold: bool
    mode: str | None
    retain_until: datetime | None


def default_transfer_config(max_concurrency: int = 4) -> TransferConfig:
    """Multipart above 16 MiB in 8 MiB parts: a one-hour MP3 at 32 kbit/s (~14 MB) is one PUT."""
    return TransferConfig(
        multipart_threshold=16 * _MIB,
        multipart_chunksize=8 * _MIB,
        max_concurrency=max_concurrency,
        use_threads=True,
        preferred_transfer_client="classic",  # the CRT client, if installed, behaves differently
    )


def _build_client(cfg: S3Config, transfer: TransferConfig) -> S3Client:
    config = Config(
        s3={"addressing_style": cfg.addressing_style},
        request_checksum_calculation=cfg.checksum,
        response_checksum_validation=cfg.checksum,
        # One retry layer: the daemon's (stamina: attempts and total-time caps from [retry], each
        # retry logged and counted in archiver_retries_total). botocore retrying underneath would
        # multiply the attempts and hide them from both.
        retries={"mode": "standard", "max_attempts": 1},
        connect_timeout=10,
        read_timeout=60,
        max_pool_connections=max(
            10, cfg.max_concurrent_uploads * (transfer.max_request_concurrency + 1)
        ),
    )
    # Credentials from boto3's default chain: environment, shared files, instance/container role.
    session = boto3.session.Session()
    credentials = session.get_credentials()
    if credentials is not None:  # the log scrubber learns the secret key, as it does PBX passwords
        register_secret(credentials.get_frozen_credentials().secret_key or "")
    return session.client(
        "s3", endpoint_url=cfg.endpoint_url, region_name=cfg.region, config=config
    )


def _clean(text: str) -> str:
    printable = "".join(ch if ch.isprintable() else " " for ch in text)
    return _URL_USERINFO_RE.sub("", printable)[:_MAX_SERVER_MESSAGE_CHARS]


def _client_error(action: str, where: str, error: ClientError) -> StoreError:
    details = error.response.get("Error", {})
    code = _error_code(error)
    status = int(error.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0))
    message = _clean(str(details.get("Message", "")))
    transient = code in _TRANSIENT_CODES or status >= 500 or status in _TRANSIENT_STATUS
    hint = {
        "SignatureDoesNotMatch": " (wrong secret key?)",
        "InvalidAccessKeyId": " (unknown access key)",
        "AccessDenied": " (check the credentials and the bucket policy)",
        "403": " (access denied: wrong credentials or bucket policy?)",
        "NoSuchBucket": " (create it, or fix s3.bucket)",
        "404": " (no such bucket?)",
        "301": " (the bucket is in another region: set s3.region)",
        "PermanentRedirect": " (the bucket is in another region: set s3.region)",
    }.get(code, "")
    detail = f": {message}" if message else ""
    return StoreError(
        f"{action} {where}: {code} (HTTP {status}){hint}{detail}",
        transient=transient,
        kind=_client_error_kind(code, status),
    )


def _client_error_kind(code: str, status: int) -> Kind:
    if code in _TIMEOUT_CODES:
        return "timeout"
    if code in _THROTTLE_CODES:
        return "throttled"
    if code in _REFUSED_CODES:
        return "refused"
    if code in _NOT_FOUND_CODES:
        return "not_found"
    return "http_5xx" if status >= 500 else "http_status"


def _botocore_error(action: str, where: str, error: Exception) -> StoreError:
    # SSL failures are nearly always a certificate or configuration problem: not transient.
    transient = isinstance(
        error, BotoConnectionError | HTTPClientError | IncompleteReadError
    ) and not isinstance(error, SSLError)
    return StoreError(
        f"{action} {where}: {type(error).__name__}: {_clean(str(error))}",
        transient=transient,
        kind=_botocore_kind(error),
    )


def _botocore_kind(error: Exception) -> Kind:
    if isinstance(error, SSLError):
        return "tls"
    if isinstance(error, ReadTimeoutError | ConnectTimeoutError):
        return "timeout"
    if isinstance(error, IncompleteReadError):
        return "truncated"
    if isinstance(error, EndpointConnectionError):
        return "connect"
    if isinstance(error, ConnectionClosedError):
        return "disconnected"
    if isinstance(error, BotoConnectionError | HTTPClientError):
        return "connection"
    if isinstance(error, NoCredentialsError | PartialCredentialsError):
        return "refused"
    return "other"


# Everything botocore and boto3 raise for a failed request. Anything else (ParamValidationError,
# a TypeError...) is a bug of ours and propagates unchanged.
_S3_FAILURES = (
    ClientError,
    S3UploadFailedError,
    BotoConnectionError,
    HTTPClientError,
    IncompleteReadError,
    NoCredentialsError,
    PartialCredentialsError,
)


def _error_code(error: ClientError) -> str:
    return str(error.response.get("Error", {}).get("Code", "?"))


def _store_error(action: str, where: str, error: Exception) -> StoreError:
    if isinstance(error, S3UploadFailedError):
        # boto3 raises it while handling the ClientError of a part or of the completion.
        error = error.__context__ if isinstance(error.__context__, ClientError) else error
    if isinstance(error, ClientError):
        return _client_error(action, where, error)
    return _botocore_error(action, where, error)


@contextmanager
def _translated(action: str, where: str) -> Iterator[None]:
    """Turn botocore's exceptions into `StoreError`. The original is dropped, not chained, so
    that nothing but `reason` can reach a log."""
    try:
        yield
    except _S3_FAILURES as error:
        raise _store_error(action, where, error) from None


class S3Store:
    """One bucket of one S3-compatible store. Thread-safe: the daemon calls it from threads."""

    def __init__(
        self,
        cfg: S3Config,
        *,
        client: S3Client | None = None,
        transfer: TransferConfig | None = None,
    ) -> None:
        self._cfg = cfg
        self._bucket = cfg.bucket
        self._transfer = transfer or default_transfer_config()
        self._client = client or _build_client(cfg, self._transfer)
        encryption: dict[str, Any] = {}
        if cfg.storage_class is not None:
            encryption["StorageClass"] = cfg.storage_class
        if cfg.sse is not None:
            encryption["ServerSideEncryption"] = cfg.sse
        if cfg.sse_kms_key_id is not None:
            encryption["SSEKMSKeyId"] = cfg.sse_kms_key_id
        self._put_args: Mapping[str, Any] = MappingProxyType(encryption)

    @property
    def bucket(self) -> str:
        return self._bucket

    def _where(self, key: str | None = None) -> str:
        return f"s3://{self._bucket}/{key}" if key is not None else f"bucket {self._bucket!r}"

    def put_verified(
        self,
        path: Path,
        key: str,
        metadata: Mapping[str, str],
        *,
        md5_b64: str,
        md5_hex: str,
        content_type: str = CONTENT_TYPE,
        lock: ObjectLock | None = None,
    ) -> StoredObject:
        """Upload the file at `path` to `key` unless this source is already there; verify it.
        With `lock`, the upload carries that Object Lock retain-until date and legal hold (an
        object found already there gets them set, so a crash between upload and ledger write
        loses no lock).

        `metadata` (from `object_metadata`) must carry `source-sha256` and `md5` = `md5_b64`.
        Return a `StoredObject`; `already_present` is True when an object of the same source with
        the same size and MD5 was found and nothing was uploaded. An object of the same source but
        other bytes (an earlier failed attempt) is replaced.
        Raise `ConflictError` if an object from another source (or of unknown source) is at the
        key, `VerifyError` if the object read back differs in size, MD5 metadata or (single-part
        PUT, no SSE-KMS) ETag, `StoreError` for any S3 failure, and `OSError` if the file cannot be
        read. Blocking: call it in a thread.
        """
        source_sha256 = metadata.get("source-sha256", "")
        if _SHA256_RE.fullmatch(source_sha256) is None:
            raise ValueError("metadata must carry source-sha256")
        if metadata.get("md5") != md5_b64 or _MD5_HEX_RE.fullmatch(md5_hex) is None:
            raise ValueError("metadata md5 must equal md5_b64, and md5_hex be 32 hex digits")
        size = path.stat().st_size

        existing = self.head(key)
        if existing is not None:
            found = existing.metadata.get("source-sha256")
            if found != source_sha256:
                raise ConflictError(
                    f"{self._where(key)} holds another source "
                    f"(source-sha256 {found or 'missing'}, ours {source_sha256}); not overwritten"
                )
            if existing.size_bytes == size and existing.metadata.get("md5") == md5_b64:
                if lock is not None:
                    self._lock_existing(key, lock)
                return StoredObject(key, size, md5_b64, existing.etag, already_present=True)

        extra = lock.put_args() if lock is not None else {}
        multipart = size >= self._transfer.multipart_threshold
        if multipart:
            self._upload_multipart(path, key, metadata, content_type, extra)
        else:
            self._put_single(path, key, metadata, md5_b64, content_type, extra)

        stored = self.head(key)
        if stored is None:
            raise VerifyError(f"{self._where(key)} is missing right after the upload")
        problems = []
        if stored.size_bytes != size:
            problems.append(f"size {stored.size_bytes} != {size}")
        if stored.metadata.get("md5") != md5_b64:
            problems.append("md5 metadata differs")
        if stored.metadata.get("source-sha256") != source_sha256:
            problems.append("source-sha256 metadata differs")
        # SSE-KMS ETags are not the MD5; multipart ETags are "<md5 of part md5s>-N".
        if not multipart and self._cfg.sse != "aws:kms" and stored.etag != md5_hex:
            problems.append(f"ETag {stored.etag} != MD5 {md5_hex}")
        if problems:
            raise VerifyError(f"{self._where(key)} after upload: {'; '.join(problems)}")
        return StoredObject(key, size, md5_b64, stored.etag, already_present=False)

    def _put_single(
        self,
        path: Path,
        key: str,
        metadata: Mapping[str, str],
        md5: str,
        content_type: str = CONTENT_TYPE,
        extra: Mapping[str, Any] = _NO_ARGS,
    ) -> None:
        # Content-MD5 makes the server check the bytes it received before it stores them.
        with path.open("rb") as body, _translated("upload", self._where(key)):
            self._client.put_object(
                Bucket=self._bucket,
                Key=key,
                Body=body,
                ContentMD5=md5,
                ContentType=content_type,
                Metadata=dict(metadata),
                **self._put_args,
                **extra,
            )

    def _upload_multipart(
        self,
        path: Path,
        key: str,
        metadata: Mapping[str, str],
        content_type: str = CONTENT_TYPE,
        lock_args: Mapping[str, Any] = _NO_ARGS,
    ) -> None:
        extra = {
            "ContentType": content_type,
            "Metadata": dict(metadata),
            **self._put_args,
            **lock_args,
        }
        with _translated("multipart upload", self._where(key)):
            self._client.upload_file(
                str(path), self._bucket, key, ExtraArgs=extra, Config=self._transfer
            )

    def _lock_existing(self, key: str, lock: ObjectLock) -> None:
        if lock.retain_until is not None:
            self.set_retention(key, lock.retain_until, lock.mode)
        if lock.legal_hold:
            self.set_legal_hold(key, on=True)

    def head(self, key: str) -> ObjectInfo | None:
        """Return what S3 says about `key`, or None if there is no such object.

        Raise `StoreError` for any other failure. (A HEAD has no error body: a missing bucket
        also looks like a missing object here.)
        """
        try:
            response = self._client.head_object(Bucket=self._bucket, Key=key)
        except _S3_FAILURES as error:
            if isinstance(error, ClientError) and _error_code(error) in _MISSING_CODES:
                return None
            raise _store_error("head", self._where(key), error) from None
        return ObjectInfo(
            key=key,
            size_bytes=response["ContentLength"],
            etag=response["ETag"].strip('"'),
            last_modified=response["LastModified"],
            content_type=response.get("ContentType"),
            metadata={name.lower(): value for name, value in response["Metadata"].items()},
        )

    def open_read(self, key: str, byte_range: str | None = None) -> ObjectReader:
        """Start reading `key`, the whole object or one `byte_range` (`bytes=A-B`, `bytes=A-`
        or `bytes=-N`, as in HTTP), without holding it in memory.

        Raise `ObjectMissing` if there is no such object, `RangeNotSatisfiable` (with the size)
        if the range starts past its end, `StoreError` for any other failure. Blocking.
        """
        where = self._where(key)
        extra: dict[str, Any] = {} if byte_range is None else {"Range": byte_range}
        try:
            response = self._client.get_object(Bucket=self._bucket, Key=key, **extra)
        except _S3_FAILURES as error:
            code = _error_code(error) if isinstance(error, ClientError) else ""
            if code in _MISSING_CODES:
                raise ObjectMissing(f"{where}: no such object") from None
            if code == "InvalidRange":
                info = self.head(key)
                size = 0 if info is None else info.size_bytes
                raise RangeNotSatisfiable(f"{where}: {byte_range} is past the end", size) from None
            raise _store_error("get", where, error) from None
        length = int(response["ContentLength"])
        content_range = response.get("ContentRange")
        if content_range:  # "bytes 0-99/1000"
            span, _, total = content_range.removeprefix("bytes ").partition("/")
            first, _, last = span.partition("-")
            first_byte, last_byte, total_bytes = int(first), int(last), int(total)
        else:
            first_byte, last_byte, total_bytes = 0, length - 1, length
        return ObjectReader(
            key=key,
            total_bytes=total_bytes,
            first_byte=first_byte,
            last_byte=last_byte,
            partial=bool(content_range),
            content_type=response.get("ContentType"),
            _body=response["Body"],
            _where=where,
        )

    def check_access(self) -> None:
        """HEAD the bucket. Raise `StoreError` with a clear reason if it cannot be reached."""
        with _translated("check access to", self._where()):
            self._client.head_bucket(Bucket=self._bucket)

    def iter_objects(self, prefix: str) -> Iterator[ObjectInfo]:
        """Yield what a HEAD says about every object under `prefix` (size, ETag, metadata).

        Objects deleted between the listing and the HEAD are skipped. Raise `StoreError`.
        """
        paginator = self._client.get_paginator("list_objects_v2")
        pages = paginator.paginate(Bucket=self._bucket, Prefix=prefix)
        listing = iter(pages)
        while True:
            with _translated("list", self._where(prefix)):
                page = next(listing, None)
            if page is None:
                return
            for item in page.get("Contents", []):
                key = item.get("Key")
                if key is None:
                    continue
                info = self.head(key)
                if info is not None:
                    yield info

    def abort_stale_multipart(self, prefix: str, older_than_s: float) -> int:
        """Abort incomplete multipart uploads under `prefix` started more than `older_than_s`
        seconds ago (their parts cost storage). Return how many were aborted. Raise `StoreError`.
        """
        cutoff = datetime.now(UTC) - timedelta(seconds=older_than_s)
        paginator = self._client.get_paginator("list_multipart_uploads")
        pages = iter(paginator.paginate(Bucket=self._bucket, Prefix=prefix))
        aborted = 0
        while True:
            with _translated("list multipart uploads", self._where(prefix)):
                page = next(pages, None)
            if page is None:
                return aborted
            for upload in page.get("Uploads", []):
                key, upload_id = upload.get("Key"), upload.get("UploadId")
                initiated = upload.get("Initiated")
                if key is None or upload_id is None or initiated is None or initiated >= cutoff:
                    continue
                try:
                    self._client.abort_multipart_upload(
                        Bucket=self._bucket, Key=key, UploadId=upload_id
                    )
                except _S3_FAILURES as error:
                    if isinstance(error, ClientError) and _error_code(error) == "NoSuchUpload":
                        continue  # completed or aborted meanwhile
                    raise _store_error("abort upload", self._where(key), error) from None
                aborted += 1

    # -- the archive's lifecycle (archiver/retention/) --------------------------------------

    def version_ids(self, key: str) -> list[str]:
        """The id of every version and delete marker of exactly `key` (a bucket that never had
        versioning lists its one object as version "null"); [] if there is none. Raise
        `StoreError`."""
        found: list[str] = []
        paginator = self._client.get_paginator("list_object_versions")
        pages = iter(paginator.paginate(Bucket=self._bucket, Prefix=key))
        while True:
            with _translated("list versions of", self._where(key)):
                page = next(pages, None)
            if page is None:
                return found
            for item in [*page.get("Versions", []), *page.get("DeleteMarkers", [])]:
                if item.get("Key") == key and item.get("VersionId"):
                    found.append(str(item["VersionId"]))

    def delete_every_version(self, key: str) -> int:
        """Destroy `key`'s bytes: delete every version and delete marker it has (a DELETE
        without a version id only hides an object in a versioned bucket), then check that
        neither a version nor the object is left. Return how many versions were deleted (0: it
        was already gone). Raise `StoreError` (kind `refused` when Object Lock forbids it: a
        legal hold or a retain-until date not reached), and `StoreError` if something is still
        there afterwards."""
        deleted = 0
        for version in self.version_ids(key):
            with _translated("delete a version of", self._where(key)):
                self._client.delete_object(Bucket=self._bucket, Key=key, VersionId=version)
            deleted += 1
        if self.head(key) is not None:  # a store that lists no versions: the plain delete
            with _translated("delete", self._where(key)):
                self._client.delete_object(Bucket=self._bucket, Key=key)
            deleted += 1
        left = self.version_ids(key)
        if left or self.head(key) is not None:
            raise StoreError(
                f"{self._where(key)}: {len(left) or 1} version(s) still there after deleting "
                "every version",
                transient=True,
                kind="other",
            )
        return deleted

    def set_legal_hold(self, key: str, *, on: bool) -> int:
        """Turn the S3 legal hold of every version of `key` on or off; return how many
        versions. Raise `StoreError` (the bucket must have Object Lock enabled)."""
        versions: list[str | None] = [*self.version_ids(key)] or [None]
        status: Any = "ON" if on else "OFF"
        for version in versions:
            extra: dict[str, Any] = {} if version is None else {"VersionId": version}
            with _translated("set the legal hold of", self._where(key)):
                self._client.put_object_legal_hold(
                    Bucket=self._bucket, Key=key, LegalHold={"Status": status}, **extra
                )
        return len(versions)

    def set_retention(self, key: str, until: datetime, mode: str) -> None:
        """Give the current version of `key` an Object Lock retain-until date `until` (aware)
        in `mode` (GOVERNANCE or COMPLIANCE). Raise `StoreError` (also when the store refuses
        to shorten a date already set)."""
        retention: Any = {"Mode": mode, "RetainUntilDate": until}
        with _translated("set the retention of", self._where(key)):
            self._client.put_object_retention(Bucket=self._bucket, Key=key, Retention=retention)

    def lock_state(self, key: str) -> LockState:
        """The legal hold and retention of the current version of `key`. Raise `StoreError`."""
        with _translated("head", self._where(key)):
            response = self._client.head_object(Bucket=self._bucket, Key=key)
        until = response.get("ObjectLockRetainUntilDate")
        return LockState(
            legal_hold=response.get("ObjectLockLegalHoldStatus") == "ON",
            mode=response.get("ObjectLockMode"),
            retain_until=until,
        )

    def object_lock_enabled(self) -> bool:
        """Whether the bucket was created with Object Lock enabled (its configuration says
        so). Raise `StoreError` for anything but "no configuration"."""
        try:
            response = self._client.get_object_lock_configuration(Bucket=self._bucket)
        except _S3_FAILURES as error:
            if isinstance(error, ClientError) and _error_code(error) in (
                "ObjectLockConfigurationNotFoundError",
                "ObjectLockConfigurationNotFound",
                "NoSuchObjectLockConfiguration",
            ):
                return False
            raise _store_error(
                "read the Object Lock configuration of", self._where(), error
            ) from None
        return response.get("ObjectLockConfiguration", {}).get("ObjectLockEnabled") == "Enabled"

    # -- primitives for `archiver doctor` ---------------------------------------------------

    def put_bytes(self, key: str, data: bytes, *, multipart: bool = False) -> None:
        """Write `data` to `key` with the configured storage class and SSE: one PUT, or (with
        `multipart`) a multipart upload of one part. Raise `StoreError`."""
        md5 = base64.b64encode(hashlib.md5(data, usedforsecurity=False).digest()).decode()
        with _translated("multipart upload" if multipart else "upload", self._where(key)):
            if not multipart:
                self._client.put_object(
                    Bucket=self._bucket, Key=key, Body=data, ContentMD5=md5, **self._put_args
                )
                return
            upload = self._client.create_multipart_upload(
                Bucket=self._bucket, Key=key, **self._put_args
            )
            upload_id = upload["UploadId"]
            try:
                part = self._client.upload_part(
                    Bucket=self._bucket, Key=key, UploadId=upload_id, PartNumber=1, Body=data,
                    ContentMD5=md5,
                )  # fmt: skip
                self._client.complete_multipart_upload(
                    Bucket=self._bucket, Key=key, UploadId=upload_id,
                    MultipartUpload={"Parts": [{"ETag": part["ETag"], "PartNumber": 1}]},
                )  # fmt: skip
            except BaseException:
                self._client.abort_multipart_upload(
                    Bucket=self._bucket, Key=key, UploadId=upload_id
                )
                raise

    def get_bytes(self, key: str, max_bytes: int = 1 << 20) -> bytes:
        """Read back at most `max_bytes` of `key`. Raise `StoreError`."""
        with _translated("download", self._where(key)):
            response = self._client.get_object(
                Bucket=self._bucket, Key=key, Range=f"bytes=0-{max_bytes - 1}"
            )
            body: bytes = response["Body"].read()
        return body

    def delete(self, key: str) -> None:
        """Delete `key` (no error if it is not there). Raise `StoreError`."""
        with _translated("delete", self._where(key)):
            self._client.delete_object(Bucket=self._bucket, Key=key)

    def create_bucket(self) -> None:
        """Create the configured bucket in the configured region, with Object Lock enabled
        when the configuration uses it (it can only be turned on at creation). Raise
        `StoreError`."""
        region = self._cfg.region
        extra: dict[str, Any] = {}
        if self._cfg.uses_object_lock:
            extra["ObjectLockEnabledForBucket"] = True
        with _translated("create", self._where()):
            if region in (None, "us-east-1"):
                self._client.create_bucket(Bucket=self._bucket, **extra)
            else:
                self._client.create_bucket(
                    Bucket=self._bucket,
                    CreateBucketConfiguration={"LocationConstraint": region},  # type: ignore[typeddict-item]
                    **extra,
                )
