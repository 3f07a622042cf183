"""Reconcile: rebuild the ledger from the bucket after the SQLite file was lost.

Every object under `{prefix}/` is HEADed; its metadata (`pbx`, `trunk`, `source-name`,
`source-sha256`, `md5`) says which recording it holds. A recording whose object checks out
becomes `verified` in the ledger (a quarantined original becomes `empty`), so the next run
neither downloads nor uploads it again. Objects that cannot be mapped back to a recording of a
configured PBX, or whose ETag contradicts their `md5`, are reported and left alone: the next run
will archive that recording again if the PBX still lists it, and never overwrites a foreign
object (`put_verified` refuses).

Run it with the daemon stopped: the ledger has one writer at a time.
"""

from __future__ import annotations

import base64
import binascii
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from zoneinfo import ZoneInfo

import structlog

from archiver.config import Config
from archiver.names import InvalidName, Recording, parse_name
from archiver.pipeline.quarantine import QUARANTINE_SEGMENT
from archiver.s3 import ObjectInfo, S3Store
from archiver.state import Ledger, RecordingState

__all__ = ["ReconcileReport", "Unmappable", "map_object", "reconcile"]

log = structlog.get_logger(__name__)

_SHA256_RE = re.compile(r"[0-9a-f]{64}")


class Unmappable(Exception):
    """An object under the prefix is not (provably) one of our archived recordings."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


@dataclass
class ReconcileReport:
    """What one reconcile found: objects seen, ledger rows written, objects it could not map."""

    objects: int = 0
    verified: int = 0
    empty: int = 0
    unchanged: int = 0
    unmapped: list[tuple[str, str]] = field(default_factory=list)  # (key, reason)


def _md5_hex(md5_b64: str) -> str:
    try:
        digest = base64.b64decode(md5_b64, validate=True)
    except (binascii.Error, ValueError):
        raise Unmappable("md5 metadata is not base64") from None
    if len(digest) != 16:
        raise Unmappable("md5 metadata is not an MD5 digest")
    return digest.hex()


def map_object(
    info: ObjectInfo, timezones: Mapping[str, ZoneInfo], prefix: str, *, etag_is_md5: bool = True
) -> tuple[Recording, RecordingState]:
    """Given one object's HEAD, return the recording it holds and the ledger state it proves.

    `timezones` maps each configured PBX name to its zone. Raise `Unmappable` with a reason if
    the metadata is missing or malformed, names an unknown PBX, or (single-part upload,
    `etag_is_md5`) the ETag is not the MD5 the metadata claims.
    """
    meta = info.metadata
    pbx, folder, name = meta.get("pbx"), meta.get("trunk"), meta.get("source-name")
    if not (pbx and folder and name):
        raise Unmappable("no pbx/trunk/source-name metadata")
    tz = timezones.get(pbx)
    if tz is None:
        raise Unmappable(f"pbx {pbx!r} is not configured")
    try:
        rec = parse_name(pbx, folder, name, tz)
    except InvalidName as error:
        raise Unmappable(f"source-name: {error.reason}") from None
    if _SHA256_RE.fullmatch(meta.get("source-sha256", "")) is None:
        raise Unmappable("no valid source-sha256 metadata")
    md5_hex = _md5_hex(meta.get("md5", ""))
    if etag_is_md5 and "-" not in info.etag and info.etag != md5_hex:
        raise Unmappable(f"ETag {info.etag} is not the md5 metadata's {md5_hex}")
    quarantined = info.key.startswith(f"{prefix}/{QUARANTINE_SEGMENT}/")
    if quarantined and meta.get("outcome") != "empty":
        raise Unmappable("under quarantine/ without outcome=empty metadata")
    return rec, ("empty" if quarantined else "verified")


def reconcile(cfg: Config, store: S3Store, ledger: Ledger) -> ReconcileReport:
    """List every object under `cfg.s3.prefix` and write what it proves into `ledger`.

    Raise `StoreError` if the bucket cannot be listed. Blocking: call it in a thread.
    """
    prefix = cfg.s3.prefix
    timezones = {pbx.name: ZoneInfo(pbx.timezone) for pbx in cfg.pbx}
    etag_is_md5 = cfg.s3.sse != "aws:kms"  # SSE-KMS ETags are not the MD5
    report = ReconcileReport()
    holder: dict[str, str] = {}  # recording key -> the object that already stands for it
    for info in store.iter_objects(f"{prefix}/"):
        report.objects += 1
        try:
            rec, state = map_object(info, timezones, prefix, etag_is_md5=etag_is_md5)
        except Unmappable as error:
            report.unmapped.append((info.key, error.reason))
            log.warning("reconcile_unmapped", key=ascii(info.key), reason=error.reason)
            continue
        if rec.key in holder:
            reason = f"a second object for {rec.key} (first: {holder[rec.key]})"
            report.unmapped.append((info.key, reason))
            log.warning("reconcile_unmapped", key=ascii(info.key), reason=reason)
            continue
        holder[rec.key] = info.key
        written = ledger.restore(
            rec,
            state,
            object_key=info.key,
            source_sha256=info.metadata["source-sha256"],
            mp3_md5=info.metadata["md5"] if state == "verified" else None,
            mp3_bytes=info.size_bytes if state == "verified" else None,
            note=info.metadata.get("reason") if state == "empty" else None,
        )
        if not written:
            report.unchanged += 1
        elif state == "verified":
            report.verified += 1
        else:
            report.empty += 1
    log.info(
        "reconciled",
        objects=report.objects,
        verified=report.verified,
        empty=report.empty,
        unchanged=report.unchanged,
        unmapped=len(report.unmapped),
    )
    return report
