"""Reconcile: rebuild the ledger and the catalogue from the bucket after the state was lost.

Every object under `{prefix}/` is HEADed; its metadata (`pbx`, `trunk`, `source-name`,
`source-sha256`, `md5`) says which recording it holds (`archiver.s3.map_object`). A recording
whose object checks out becomes `verified` in the ledger with its catalogue row (a quarantined
original becomes `empty`), so the next run neither downloads nor uploads it again and
`archiver web` finds it; catalogue rows whose object is no longer in the bucket are removed.
Objects that cannot be mapped back to a recording of a configured PBX, or whose ETag contradicts
their `md5`, are reported and left alone: the next run will archive that recording again if the
PBX still lists it, and never overwrites a foreign object (`put_verified` refuses).

Run it with the daemon stopped: the ledger has one writer at a time.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from zoneinfo import ZoneInfo

import structlog

from archiver.config import Config
from archiver.s3 import S3Store, Unmappable, map_object
from archiver.state import Catalogue, Ledger, catalogue_entry

__all__ = ["ReconcileReport", "reconcile"]

log = structlog.get_logger(__name__)

_SHA256_RE = re.compile(r"[0-9a-f]{64}")


@dataclass
class ReconcileReport:
    """What one reconcile found: objects seen, ledger rows written, objects it could not map."""

    objects: int = 0
    verified: int = 0
    empty: int = 0
    unchanged: int = 0
    catalogue_removed: int = 0
    unmapped: list[tuple[str, str]] = field(default_factory=list)  # (key, reason)


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
            rec, meta, state = map_object(info, timezones, prefix, etag_is_md5=etag_is_md5)
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
        entry = (
            catalogue_entry(
                rec, object_key=info.key, size_bytes=info.size_bytes, metadata=info.metadata,
                archived_at=info.last_modified,
            )
            if state == "verified"
            else None
        )  # fmt: skip
        written = ledger.restore(
            rec,
            state,
            catalogue=entry,
            object_key=info.key,
            source_sha256=meta.source_sha256,
            mp3_md5=meta.md5 if state == "verified" else None,
            mp3_bytes=info.size_bytes if state == "verified" else None,
            note=(meta.reason or None) if state == "empty" else None,
        )
        if not written:
            report.unchanged += 1
        elif state == "verified":
            report.verified += 1
        else:
            report.empty += 1
    # The whole bucket was listed (a listing error raised above): catalogue rows whose object
    # is gone are dropped, so the catalogue is exactly what the bucket holds.
    report.catalogue_removed = Catalogue(ledger.db).remove_except(holder.values())
    log.info(
        "reconciled",
        catalogue_removed=report.catalogue_removed,
        objects=report.objects,
        verified=report.verified,
        empty=report.empty,
        unchanged=report.unchanged,
        unmapped=len(report.unmapped),
    )
    return report
