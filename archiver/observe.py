"""What the daemon reports at its stage boundaries, for metrics and service status to consume.

The daemon calls an `Observer` and knows nothing of Prometheus or systemd; `NullObserver` is the
default so a daemon without an HTTP endpoint (backfill, tests) pays nothing. Every argument is a
PBX name, a stage name, a fixed reason word or a number: nothing that can hold a URL or secret.
"""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Final, Protocol

from archiver.errors import KINDS, Kind

__all__ = [
    "FAILURE_REASONS", "RETRY_REASONS", "STAGES", "NullObserver", "Observer", "Outcome",
    "failure_reason", "retry_reason",
]  # fmt: skip

# The stages timed by `stage_done` (labels of the latency histogram).
STAGES = ("list", "download", "transcode", "upload")


class Outcome(StrEnum):
    """How one due recording ended (each one ends in exactly one; the words are the metrics'
    `outcome` label values and the `PollReport` field names)."""

    ARCHIVED = "archived"
    ALREADY_PRESENT = "already_present"  # the same source was already verified in the bucket
    FAILED = "failed"
    EMPTY = "empty"  # a header-only or zero-length source: nothing to archive
    TAKEN_ELSEWHERE = "taken_elsewhere"  # another worker sharing the state held or finished it
    DEFERRED = "deferred"  # the state database was away: the next poll takes it again
    CANCELLED = "cancelled"  # cut off by the shutdown: the next start takes it again


class Observer(Protocol):
    """Receives one call per event; implementations must be fast and never raise."""

    def listed(self, pbx: str, *, ok: bool, discovered: int, due: int) -> None:
        """One day's listing of `pbx` ended (`ok` False: it failed after its retries)."""

    def listing_broken(self, pbx: str, reason: str) -> None:
        """`pbx` listed nothing and could not show that its commands run (`reason` is fixed
        text naming no secret): the empty listing was not believed."""

    def stage_done(self, stage: str, pbx: str, seconds: float, *, ok: bool) -> None:
        """A stage of one recording (or a listing) took `seconds`, retries included."""

    def retrying(self, stage: str, pbx: str, reason: str) -> None:
        """A transient error of `stage` is about to be retried; `reason` is from `retry_reason`."""

    def failed(self, pbx: str, reason: str, *, for_good: bool) -> None:
        """A recording of `pbx` failed (`reason` is from `FAILURE_REASONS`); `for_good`: it is
        not taken again until an administrator re-queues it."""

    def downloaded(self, pbx: str, size_bytes: int) -> None:
        """A source file of `size_bytes` came in from `pbx`."""

    def stored(self, pbx: str, *, mp3_bytes: int, audio_s: float, uploaded: bool) -> None:
        """An MP3 is verified in S3 (`uploaded` False: it was already there, nothing sent)."""

    def finished(self, pbx: str, outcome: Outcome) -> None:
        """A recording ended with `outcome`."""

    def paused(self, pbx: str, until: datetime) -> None:
        """A backfill of `pbx` waits in a `[backfill] pause_during` window until `until` (the
        PBX's local time)."""

    def credentials_refused(self, pbx: str) -> None:
        """`pbx` refused our username/password (until its next accepted listing)."""


class NullObserver:
    """Ignores everything."""

    def listed(self, pbx: str, *, ok: bool, discovered: int, due: int) -> None:
        return None

    def listing_broken(self, pbx: str, reason: str) -> None:
        return None

    def stage_done(self, stage: str, pbx: str, seconds: float, *, ok: bool) -> None:
        return None

    def retrying(self, stage: str, pbx: str, reason: str) -> None:
        return None

    def failed(self, pbx: str, reason: str, *, for_good: bool) -> None:
        return None

    def downloaded(self, pbx: str, size_bytes: int) -> None:
        return None

    def stored(self, pbx: str, *, mp3_bytes: int, audio_s: float, uploaded: bool) -> None:
        return None

    def finished(self, pbx: str, outcome: Outcome) -> None:
        return None

    def paused(self, pbx: str, until: datetime) -> None:
        return None

    def credentials_refused(self, pbx: str) -> None:
        return None


# The label values of archiver_retries_total{reason}: the transient kinds of `archiver.errors`,
# and "other". A fixed vocabulary keeps the label set small and free of anything variable.
RETRY_REASONS: Final[tuple[str, ...]] = (
    "timeout", "truncated", "html_page", "disconnected", "connect", "connection", "throttled",
    "http_5xx", "http_status", "other",
)  # fmt: skip


def retry_reason(kind: Kind) -> str:
    """The retry label for an error of `kind`: the kind itself if it is one of `RETRY_REASONS`,
    else "other"."""
    return kind if kind in RETRY_REASONS else "other"


# The label values of archiver_failures_total{reason}: every error kind, and the failures that
# have no kind (bad audio, a work file someone removed, a bug or a local fault).
FAILURE_REASONS: Final[tuple[str, ...]] = (
    *KINDS, "bad_audio", "work_file_vanished", "unexpected",
)  # fmt: skip


def failure_reason(kind: str) -> str:
    """The failure label for `kind`: itself if it is one of `FAILURE_REASONS`, else "other"."""
    return kind if kind in FAILURE_REASONS else "other"
