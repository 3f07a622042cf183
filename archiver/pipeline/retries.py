"""Retries of one stage: transient PBX/S3 errors again with backoff, within [retry]'s caps;
what ends a recording (`RecordingFailed`) and what only interrupts it (`Interrupted`)."""

from __future__ import annotations

import stamina
import stamina.instrumentation
import structlog
from stamina.instrumentation import RetryDetails

from archiver.errors import ArchiverError

__all__ = ["Interrupted", "RecordingFailed"]

log = structlog.get_logger("archiver.pipeline.daemon")


class RecordingFailed(ArchiverError):
    """One recording could not be archived (see `ArchiverError`); `reason` names the stage."""


class Interrupted(Exception):
    """A stage was cut short by the shutdown (SIGTERM): not the recording's failure. Its ledger
    state stays as it was, so the next start takes it again."""

    def __init__(self, stage: str) -> None:
        super().__init__(f"{stage}: interrupted by the shutdown")
        self.stage = stage


def _log_retry(details: RetryDetails) -> None:
    """stamina's retry hook: one `retrying` line per retry, just before its wait: what failed
    (`reason`, the sanitised error), where (`stage`, `pbx`, `uniqueid`, bound by the caller),
    which attempt (`attempt` of `attempts`) and when the next one starts."""
    error = details.caused_by
    log.warning(
        "retrying",
        reason=getattr(error, "reason", type(error).__name__),
        attempt=details.retry_num,
        next_attempt_in_s=round(details.wait_for, 2),
    )


# Replaces stamina's default hooks: its structlog one logs `callable`, `args` and `kwargs`
# (`<context block>`, [], {}), its Prometheus one a global registry we never serve.
stamina.instrumentation.set_on_retry_hooks([_log_retry])
