"""Destroying recordings, one at a time, all or nothing: claim it (the state checks that it is
still archived and that no hold covers it), delete every version of its object from the store,
then write the destruction log, the catalogue and the ledger in one transaction
(`archiver.state.DestructionLog`). A run killed at any point leaves either nothing done or a
claim that the next run finishes (`finish_pending`); two processes destroying at once log each
recording once.

A verified recording has no work file left (the pipeline deletes them once the upload is
verified, and every start sweeps the folders of dead processes), so the object, the catalogue
row and the ledger row are all the copies archiver holds.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime

import structlog

from archiver.s3 import S3Store, StoreError
from archiver.state import CatalogueEntry, Claim, Destruction, Reason, State

__all__ = ["Destroyer", "Failed", "Kept", "Outcome", "Target"]

log = structlog.get_logger(__name__)


@dataclass(frozen=True, slots=True)
class Target:
    """A recording to destroy, why (`reason`) and on what grounds (`basis`: the rule, or the
    request's reference)."""

    entry: CatalogueEntry
    reason: Reason
    basis: str


@dataclass(frozen=True, slots=True)
class Kept:
    """A recording that was not destroyed on purpose: `why` in words, the holds' cases, and
    the first moment it may go (None: while a hold lasts)."""

    entry: CatalogueEntry
    why: str
    cases: tuple[str, ...] = ()
    may_go_at: datetime | None = None


@dataclass(frozen=True, slots=True)
class Failed:
    """A recording that should have been destroyed and was not: the store refused or failed."""

    entry: CatalogueEntry
    reason: str


@dataclass
class Outcome:
    """What a destruction pass did."""

    destroyed: list[Destruction] = field(default_factory=list)
    kept: list[Kept] = field(default_factory=list)
    failed: list[Failed] = field(default_factory=list)
    # Already destroyed or being destroyed by another process when we came to it.
    elsewhere: int = 0
    interrupted: bool = False

    def add(self, other: Outcome) -> None:
        self.destroyed += other.destroyed
        self.kept += other.kept
        self.failed += other.failed
        self.elsewhere += other.elsewhere
        self.interrupted = self.interrupted or other.interrupted


def _refusal(error: StoreError) -> str:
    if error.kind == "refused":
        return (
            f"the store refused to delete it (an S3 legal hold or a retain-until date not "
            f"reached, or no s3:DeleteObjectVersion permission): {error.reason}"
        )
    return error.reason


class Destroyer:
    """Destroys recordings in `state` and `store` on behalf of `command` run by `username`.
    `stop` is asked between recordings (a signal arrived: the run stops cleanly);
    `on_destroyed` is told of each destruction (metrics)."""

    def __init__(
        self,
        state: State,
        store: S3Store,
        *,
        command: str,
        username: str,
        stop: Callable[[], bool] = lambda: False,
        on_destroyed: Callable[[Destruction], None] | None = None,
    ) -> None:
        self._state = state
        self._store = store
        self._command = command
        self._username = username
        self._stop = stop
        self._on_destroyed = on_destroyed

    def finish_pending(self) -> Outcome:
        """Finish the destructions a killed run left claimed (or another process is doing right
        now: finishing is idempotent, and the log gets one row)."""
        outcome = Outcome()
        for claim, entry in self._state.destructions.pending():
            if self._stop():
                outcome.interrupted = True
                break
            if entry is None:  # the catalogue row is gone: another process finished it
                self._state.destructions.cancel(claim)
                outcome.elsewhere += 1
                continue
            log.info(
                "destruction_resumed", key=claim.recording_key, claimed_at=str(claim.claimed_at)
            )
            self._complete(claim, entry, outcome)
        return outcome

    def destroy(self, targets: Sequence[Target]) -> Outcome:
        """Destroy each of `targets` (those a hold covers are kept)."""
        outcome = Outcome()
        for target in targets:
            if self._stop():
                outcome.interrupted = True
                break
            claim = self._state.destructions.claim(
                target.entry,
                reason=target.reason,
                basis=target.basis,
                command=self._command,
                username=self._username,
            )
            if claim == "held":
                outcome.kept.append(self._held(target.entry))
            elif isinstance(claim, str):
                outcome.elsewhere += 1
            else:
                self._complete(claim, target.entry, outcome)
        return outcome

    def _held(self, entry: CatalogueEntry) -> Kept:
        cases = tuple(dict.fromkeys(h.case_ref for h in self._state.holds.covering(entry)))
        return Kept(entry, f"held (case {', '.join(cases)})", cases)

    def _complete(self, claim: Claim, entry: CatalogueEntry, outcome: Outcome) -> None:
        destructions = self._state.destructions
        if destructions.held_now(entry):  # a hold added since the claim wins
            destructions.cancel(claim)
            outcome.kept.append(self._held(entry))
            return
        try:
            versions = self._store.delete_every_version(claim.object_key)
        except StoreError as error:
            destructions.cancel(claim)
            reason = _refusal(error)
            log.warning("destruction_failed", key=claim.recording_key, reason=reason)
            outcome.failed.append(Failed(entry, reason))
            return
        done = destructions.finish(claim, entry, versions=versions)
        if done is None:
            outcome.elsewhere += 1
            return
        log.info(
            "destroyed",
            key=done.recording_key,
            object_key=done.object_key,
            reason=done.reason,
            basis=done.basis,
            versions=done.versions,
            command=done.command,
        )
        outcome.destroyed.append(done)
        if self._on_destroyed is not None:
            self._on_destroyed(done)
