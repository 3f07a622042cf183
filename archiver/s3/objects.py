"""The format of an archived object: its key, its user metadata, and the way back from both to
the recording they hold.

`ObjectMetadata` is the one description of the metadata: its fields are the metadata names
(`started_at` is `x-amz-meta-started-at`), so the list of names (`METADATA_FIELDS`), the dict
that is written (`ObjectMetadata.headers`) and its reading (`ObjectMetadata.from_headers`) cannot
drift apart. The store writes it, quarantine adds `outcome` and `reason`, reconcile reads it back
with `map_object`.

Empty values: SeaweedFS (4.48) drops a user-metadata header whose value is empty while AWS keeps
it, so `headers` leaves empty values out and every store returns the same thing; `from_headers`
reads a missing field as empty.
"""

from __future__ import annotations

import base64
import binascii
import dataclasses
import re
import string
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from types import MappingProxyType
from typing import Final, Literal
from zoneinfo import ZoneInfo

from archiver.names import InvalidName, Recording, parse_name

__all__ = [
    "CONTENT_TYPE",
    "EMPTY_SEGMENT",
    "METADATA_FIELDS",
    "QUARANTINE_CONTENT_TYPE",
    "QUARANTINE_SEGMENT",
    "ArchivedAs",
    "ObjectInfo",
    "ObjectMetadata",
    "Unmappable",
    "map_object",
    "object_key",
    "object_metadata",
    "quarantine_key",
]

CONTENT_TYPE: Final = "audio/mpeg"
QUARANTINE_SEGMENT: Final = "quarantine"
QUARANTINE_CONTENT_TYPE: Final = "application/octet-stream"
# Stands for an empty caller/callee that would otherwise leave an empty key segment ("a//b").
# Never a real party: parties are [A-Za-z0-9+] only.
EMPTY_SEGMENT: Final = "-"

ArchivedAs = Literal["verified", "empty"]

_MAX_KEY_BYTES = 1024
_MAX_METADATA_BYTES = 2048  # AWS's limit for all user metadata keys and values together
_METADATA_NAME_RE = re.compile(r"[a-z0-9][a-z0-9-]{0,63}")
_SHA256_RE = re.compile(r"[0-9a-f]{64}")
_MD5_B64_RE = re.compile(r"[A-Za-z0-9+/]{22}==")
_NO_EXTRA: Mapping[str, str] = MappingProxyType({})


@dataclass(frozen=True, slots=True)
class ObjectInfo:
    """What a HEAD says about one object."""

    key: str
    size_bytes: int
    etag: str  # without quotes
    last_modified: datetime
    content_type: str | None
    metadata: dict[str, str]  # lower-case names, without the x-amz-meta- prefix


@dataclass(frozen=True, slots=True)
class ObjectMetadata:
    """The user metadata of an archived object: one field per metadata name (`_` for `-`), in
    the order written, then `extra` (e.g. the dial status of a call placed through archiver)."""

    pbx: str
    trunk: str
    caller: str
    callee: str
    started_at: str  # ISO 8601 with the PBX's UTC offset
    duration_s: str
    uniqueid: str
    source_name: str
    source_sha256: str  # SHA-256 of the file downloaded from the PBX: the object's identity
    md5: str  # base64 MD5 of the object's body
    outcome: str = ""  # "empty" for a quarantined original
    reason: str = ""  # why it was quarantined
    extra: Mapping[str, str] = field(default_factory=dict)

    @classmethod
    def for_recording(
        cls,
        rec: Recording,
        *,
        source_sha256: str,
        md5_b64: str,
        outcome: str = "",
        reason: str = "",
        extra: Mapping[str, str] = _NO_EXTRA,
    ) -> ObjectMetadata:
        return cls(
            pbx=rec.pbx,
            trunk=rec.folder,
            caller=rec.caller,
            callee=rec.callee,
            started_at=rec.started_at.isoformat(),
            duration_s=str(rec.duration_s),
            uniqueid=rec.uniqueid,
            source_name=rec.name,
            source_sha256=source_sha256,
            md5=md5_b64,
            outcome=outcome,
            reason=reason,
            extra=MappingProxyType(dict(extra)),
        )

    def headers(self) -> dict[str, str]:
        """The metadata as written (names without x-amz-meta-, empty values left out).

        Raise `ValueError` for a malformed checksum, an `extra` name that is not lower-case
        `[a-z0-9-]` or repeats a field's name, a value that is not printable ASCII without
        surrounding blanks, or more than S3's 2 KB of metadata.
        """
        if _SHA256_RE.fullmatch(self.source_sha256) is None:
            raise ValueError("source_sha256 must be 64 lower-case hex digits")
        if _MD5_B64_RE.fullmatch(self.md5) is None:
            raise ValueError("md5_b64 must be a base64 MD5 digest (24 characters)")
        named = {_header(f.name): getattr(self, f.name) for f in _FIELDS}
        for name in self.extra:
            if name in named or _METADATA_NAME_RE.fullmatch(name) is None:
                raise ValueError(f"extra metadata name {name!r} is reserved or not [a-z0-9-]")
        written = {name: value for name, value in {**named, **self.extra}.items() if value}
        for name, value in written.items():
            if not (value.isascii() and value.isprintable()) or value != value.strip():
                raise ValueError(f"metadata {name!r} is not printable ASCII without outer blanks")
        if sum(len(name) + len(value) for name, value in written.items()) > _MAX_METADATA_BYTES:
            raise ValueError(f"metadata is larger than S3's {_MAX_METADATA_BYTES} bytes")
        return written

    @classmethod
    def from_headers(cls, headers: Mapping[str, str]) -> ObjectMetadata:
        """The inverse of `headers`: a missing field reads as empty, other names go to `extra`.
        Nothing is checked here (see `map_object`)."""
        known = {_header(f.name): f.name for f in _FIELDS}
        values = {known[name]: value for name, value in headers.items() if name in known}
        extra = {name: value for name, value in headers.items() if name not in known}
        return cls(**{f.name: values.get(f.name, "") for f in _FIELDS}, extra=extra)


def _header(field_name: str) -> str:
    return field_name.replace("_", "-")


_FIELDS = tuple(f for f in dataclasses.fields(ObjectMetadata) if f.name != "extra")
# The metadata every archived object carries, in this order (as x-amz-meta-<name>); a quarantined
# original adds `outcome` and `reason`.
METADATA_FIELDS: Final = tuple(_header(f.name) for f in _FIELDS if f.default is dataclasses.MISSING)


def object_metadata(
    rec: Recording,
    *,
    source_sha256: str,
    md5_b64: str,
    extra: Mapping[str, str] = _NO_EXTRA,
) -> dict[str, str]:
    """The metadata written for `rec`'s MP3: `ObjectMetadata.for_recording(...).headers()`."""
    return ObjectMetadata.for_recording(
        rec, source_sha256=source_sha256, md5_b64=md5_b64, extra=extra
    ).headers()


def _key_values(rec: Recording, prefix: str) -> dict[str, object]:
    local = rec.started_at
    return {
        "prefix": prefix,
        "pbx": rec.pbx,
        "trunk": rec.folder,
        "yyyy": f"{local.year:04d}",
        "mm": f"{local.month:02d}",
        "dd": f"{local.day:02d}",
        "yyyymmdd": local.strftime("%Y%m%d"),
        "hhmmss": local.strftime("%H%M%S"),
        "caller": rec.caller,
        "callee": rec.callee,
        "uniqueid": rec.uniqueid,
        "duration_s": rec.duration_s,  # an int, so "{duration_s:05d}" works
        "source_name": rec.name,
    }


def object_key(rec: Recording, template: str, prefix: str) -> str:
    """Given a recording, a key template (see `archiver.config.KEY_FIELDS`) and the prefix, return
    the object key.

    Dates are the PBX's local time (`rec.started_at`), as in the file name. An empty caller or
    callee renders as nothing (`..._100__1479456211.1297.mp3`), so the key still reads back; only
    when that would leave a whole path segment empty does the segment become `-`.
    Raise `ValueError` if the template has an empty segment or the result would contain `//`,
    `..`, a `.` segment, a leading `/`, non-printable ASCII, or exceed 1024 bytes.
    """
    values = _key_values(rec, prefix)
    segments: list[str] = []
    for segment in template.split("/"):
        if not segment:
            raise ValueError(f"key template {template!r} has an empty path segment")
        try:
            rendered = string.Formatter().vformat(segment, (), values)
        except (KeyError, IndexError, ValueError) as error:
            raise ValueError(f"key template {template!r} cannot be filled: {error}") from None
        segments.append(rendered or EMPTY_SEGMENT)
    key = "/".join(segments)
    if (
        key.startswith("/")
        or "//" in key
        or ".." in key
        or "." in key.split("/")
        or not key.isascii()
        or not key.isprintable()
        or len(key) > _MAX_KEY_BYTES
    ):
        raise ValueError(f"object key {key!r} is not a safe S3 key")
    return key


def quarantine_key(rec: Recording, prefix: str) -> str:
    """`{prefix}/quarantine/{pbx}/{trunk}/{name}`: the PBX's own name, so nothing is lost.

    Every part is allow-listed (`archiver.names`), so the key is a safe S3 key.
    """
    return f"{prefix}/{QUARANTINE_SEGMENT}/{rec.pbx}/{rec.folder}/{rec.name}"


class Unmappable(Exception):
    """An object under the prefix is not (provably) one of our archived recordings."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def map_object(
    info: ObjectInfo, timezones: Mapping[str, ZoneInfo], prefix: str, *, etag_is_md5: bool = True
) -> tuple[Recording, ObjectMetadata, ArchivedAs]:
    """Given one object's HEAD, return the recording it holds, its metadata, and what it proves:
    `verified` (an archived MP3) or `empty` (a quarantined original).

    `timezones` maps each configured PBX name to its zone. Raise `Unmappable` with a reason if
    the metadata is missing or malformed, names an unknown PBX, or (single-part upload,
    `etag_is_md5`) the ETag is not the MD5 the metadata claims.
    """
    meta = ObjectMetadata.from_headers(info.metadata)
    if not (meta.pbx and meta.trunk and meta.source_name):
        raise Unmappable("no pbx/trunk/source-name metadata")
    tz = timezones.get(meta.pbx)
    if tz is None:
        raise Unmappable(f"pbx {meta.pbx!r} is not configured")
    try:
        rec = parse_name(meta.pbx, meta.trunk, meta.source_name, tz)
    except InvalidName as error:
        raise Unmappable(f"source-name: {error.reason}") from None
    if _SHA256_RE.fullmatch(meta.source_sha256) is None:
        raise Unmappable("no valid source-sha256 metadata")
    md5_hex = _md5_hex(meta.md5)
    if etag_is_md5 and "-" not in info.etag and info.etag != md5_hex:
        raise Unmappable(f"ETag {info.etag} is not the md5 metadata's {md5_hex}")
    quarantined = info.key.startswith(f"{prefix}/{QUARANTINE_SEGMENT}/")
    if quarantined and meta.outcome != "empty":
        raise Unmappable("under quarantine/ without outcome=empty metadata")
    return rec, meta, ("empty" if quarantined else "verified")


def _md5_hex(md5_b64: str) -> str:
    try:
        digest = base64.b64decode(md5_b64, validate=True)
    except (binascii.Error, ValueError):
        raise Unmappable("md5 metadata is not base64") from None
    if len(digest) != 16:
        raise Unmappable("md5 metadata is not an MD5 digest")
    return digest.hex()
