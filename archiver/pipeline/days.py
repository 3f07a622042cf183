"""Which days to poll, and what one day of one PBX holds that is due now (`list_day`).

`list_day` is the one answer to "list, parse, is it due": the daemon archives what it returns
and `archiver backfill --dry-run` counts it, so the two cannot disagree. It retries the listing
as the daemon does, does not believe an empty listing the PBX cannot vouch for
(`listing_check`), parses off the event loop and reads the ledger on the state's own threads;
it writes nothing (the daemon records the new recordings and the listing's success itself).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from zoneinfo import ZoneInfo

import structlog

from archiver.names import Recording
from archiver.pbx import PbxAuthError, PbxClient, date_pattern
from archiver.pipeline.listing import parse_listing
from archiver.pipeline.listing_check import RECENT_S, explain_empty_listing
from archiver.pipeline.retries import RecordingFailed, Retrier
from archiver.state import FINAL_STATES, Ledger, LedgerEntry, StateThreads

__all__ = ["DayListing", "DueRules", "days_to_poll", "is_due", "list_day"]


@dataclass(frozen=True, slots=True)
class DueRules:
    """When a listed recording is due: settled for `settle_s` after its end, and not failed
    `max_attempts` times (`[poll] settle_s`, `[retry] max_recording_attempts`)."""

    settle_s: float
    max_attempts: int


@dataclass(frozen=True, slots=True)
class DayListing:
    """One day of one PBX as listed now. `error` set: the listing failed (after its retries),
    or came back empty and could not be believed (`broken`); nothing else is then known.

    `listed` counts the PBX's lines, `invalid` the lines that are not recording names (with
    why), `valid` the names that are; `due` the recordings of this day to archive now
    (`new`: those of them the ledger has never seen), `unsettled` those not settled yet."""

    pbx: str
    day: date
    listed: int = 0
    valid: tuple[Recording, ...] = ()
    invalid: tuple[tuple[str, str], ...] = ()
    due: tuple[Recording, ...] = ()
    new: tuple[Recording, ...] = ()
    unsettled: int = 0
    error: str | None = None
    auth_refused: bool = False
    broken: bool = False

    @property
    def ok(self) -> bool:
        return self.error is None


def days_to_poll(now: datetime, tz: ZoneInfo, lookback_days: int) -> list[date]:
    """Today in the PBX's time zone, then the `lookback_days` days before it."""
    today = now.astimezone(tz).date()
    return [today - timedelta(days=offset) for offset in range(lookback_days + 1)]


def is_due(
    rec: Recording, entry: LedgerEntry | None, *, now: datetime, settle_s: float, max_attempts: int
) -> bool | None:
    """True if `rec` should be archived now; None if not yet settled; False if it never needs to
    be (already final, or failed for good)."""
    if entry is not None:
        if entry.state in FINAL_STATES:
            return False
        if entry.state == "failed" and (not entry.retryable or entry.attempts >= max_attempts):
            return False
    if rec.ended_at + timedelta(seconds=settle_s) > now:
        return None
    return True


async def list_day(
    client: PbxClient,
    day: date,
    *,
    ledger: Ledger,
    state: StateThreads,
    retry: Retrier,
    rules: DueRules,
    clock: Callable[[], datetime],
) -> DayListing:
    """List `day` of `client`'s PBX and sort what it holds (see `DayListing`). Raise
    `Interrupted` if the shutdown cut the listing short, `StateUnavailable` if the ledger could
    not be read."""
    pbx = client.name
    try:
        with structlog.contextvars.bound_contextvars(pbx=pbx, day=day.isoformat()):
            listing = await retry(lambda: client.find(date_pattern(day)), "list", pbx)
    except RecordingFailed as error:
        refused = isinstance(error.__cause__, PbxAuthError)
        return DayListing(pbx, day, error=error.reason, auth_refused=refused)
    if not listing.lines:
        broken = await _empty_listing_problem(client, ledger, state, retry)
        if broken is not None:
            return DayListing(pbx, day, error=broken, broken=True)
    # ~3.5 us a line: a full listing parsed on the loop would stall /healthz and callbacks.
    tz = ZoneInfo(client.cfg.timezone)
    parsed = await asyncio.to_thread(parse_listing, pbx, listing.lines, tz)
    known = await state.run(ledger.states_for_day, pbx, day.isoformat())
    now = clock()
    due: list[Recording] = []
    unsettled = 0
    for rec in parsed.recordings:
        if rec.day != day:
            continue  # the pattern matched elsewhere in the name; its own day lists it
        verdict = is_due(
            rec, known.get(rec.name), now=now, settle_s=rules.settle_s,
            max_attempts=rules.max_attempts,
        )  # fmt: skip
        if verdict is None:
            unsettled += 1
        elif verdict:
            due.append(rec)
    return DayListing(
        pbx,
        day,
        listed=len(listing.lines),
        valid=tuple(parsed.recordings),
        invalid=tuple(parsed.invalid),
        due=tuple(due),
        new=tuple(rec for rec in due if rec.name not in known),
        unsettled=unsettled,
    )


async def _empty_listing_problem(
    client: PbxClient, ledger: Ledger, state: StateThreads, retry: Retrier
) -> str | None:
    """Why an empty `find` of `client` cannot be believed (see `listing_check`), or None."""
    since = time.time() - RECENT_S
    recent = await state.run(ledger.latest_verified, client.name, since=since)
    name = recent.name if recent is not None else None
    try:
        return await retry(lambda: explain_empty_listing(client, name), "list", client.name)
    except RecordingFailed as error:
        return f"the listing came back empty and the check of it failed: {error.reason}"
