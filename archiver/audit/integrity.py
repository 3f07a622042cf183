"""`archiver verify`: re-read archived objects and compare their bytes with what the state
recorded when each was verified (size and MD5), to find bit rot and tampering.

A sample (`sample_percent`, drawn at random per object, so repeated runs cover everything over
time) of the calls that started since a day, walked in key order. Each object is read in chunks
and hashed; nothing is held in memory.
"""

from __future__ import annotations

import base64
import hashlib
import random
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Final, Literal

from archiver.s3 import ObjectMissing, S3Store, StoreError
from archiver.state import Expected, Fixity

__all__ = ["Finding", "IntegrityReport", "check_object", "verify_objects"]

_CHUNK_BYTES: Final = 256 * 1024
_BATCH: Final = 500

Verdict = Literal["ok", "mismatch", "missing", "unrecorded", "unreadable"]


@dataclass(frozen=True, slots=True)
class Finding:
    """One object that is not as recorded: `verdict` and what was seen."""

    object_key: str
    verdict: Verdict
    detail: str


@dataclass
class IntegrityReport:
    """What a run saw: objects checked, bytes read, and every object not `ok`."""

    checked: int = 0
    bytes_read: int = 0
    findings: list[Finding] = field(default_factory=list)

    def count(self, verdict: Verdict) -> int:
        return sum(finding.verdict == verdict for finding in self.findings)

    @property
    def damaged(self) -> int:
        """Objects whose bytes do not match, or that are gone."""
        return self.count("mismatch") + self.count("missing")


def check_object(store: S3Store, expected: Expected) -> tuple[Verdict, str, int]:
    """Read one object whole; its verdict, a detail, and the bytes read."""
    try:
        reader = store.open_read(expected.object_key)
    except ObjectMissing:
        return "missing", "the catalogue lists it, the bucket has no such object", 0
    except StoreError as error:
        return "unreadable", error.reason, 0
    md5, size = hashlib.md5(usedforsecurity=False), 0
    try:
        while chunk := reader.read(_CHUNK_BYTES):
            md5.update(chunk)
            size += len(chunk)
    except StoreError as error:
        return "unreadable", error.reason, size
    finally:
        reader.close()
    digest = base64.b64encode(md5.digest()).decode()
    if expected.size_bytes is not None and size != expected.size_bytes:
        return "mismatch", f"{size} bytes, the catalogue recorded {expected.size_bytes}", size
    if expected.md5_b64 is None:
        return "unrecorded", "no MD5 was recorded for it (moved from an older ledger)", size
    if digest != expected.md5_b64:
        return "mismatch", f"MD5 {digest}, recorded {expected.md5_b64}", size
    return "ok", "", size


def verify_objects(
    store: S3Store,
    fixity: Fixity,
    *,
    since: datetime | None = None,
    sample_percent: float = 100.0,
    rng: random.Random | None = None,
    on_checked: Callable[[Expected, Verdict], None] | None = None,
) -> IntegrityReport:
    """Check a `sample_percent` sample of the objects of calls started since `since`."""
    chooser = rng or random.SystemRandom()
    report = IntegrityReport()
    after = ""
    while batch := fixity.batch(since=since, after_key=after, limit=_BATCH):
        after = batch[-1].object_key
        for expected in batch:
            if sample_percent < 100 and chooser.random() * 100 >= sample_percent:
                continue
            verdict, detail, size = check_object(store, expected)
            report.checked += 1
            report.bytes_read += size
            if verdict != "ok":
                report.findings.append(Finding(expected.object_key, verdict, detail))
            if on_checked is not None:
                on_checked(expected, verdict)
    return report
