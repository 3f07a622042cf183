"""`archiver run`'s periodic destruction: every `[destruction] every_days` (KVKK: at most six
months apart) it destroys what the rules expired, as `archiver retention run --yes` would,
except that it never forces past `[destruction] max_per_run` (it logs `destruction_stopped`
and tries again at the next period). The schedule is kept in the state (the last run's start),
so a restarted daemon, or several workers sharing one PostgreSQL, keep one rhythm."""

from __future__ import annotations

import asyncio
import contextlib
import threading
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Final

import structlog

from archiver.config import Config
from archiver.retention.plan import plan_retention
from archiver.retention.rules import Rules
from archiver.retention.run import DestroyedCounter, execute, record_stopped
from archiver.s3 import S3Store
from archiver.state import DestructionRun, State

__all__ = ["DAEMON_COMMAND", "PERIODIC_COMMANDS", "Schedule", "destroy_periodically", "schedule"]

log = structlog.get_logger(__name__)

DAEMON_COMMAND: Final = "archiver run"
# The runs that keep the period (an erasure is a request, not the periodic destruction).
PERIODIC_COMMANDS: Final = (DAEMON_COMMAND, "archiver retention run")
_RECHECK_S: Final = 3600.0  # another worker may have run meanwhile: look again at least hourly


@dataclass(frozen=True, slots=True)
class Schedule:
    """The last periodic run (None: never) and when the next is due (None: no rule, so no
    destruction)."""

    last: DestructionRun | None
    next_at: datetime | None


def schedule(cfg: Config, state: State, now: datetime | None = None) -> Schedule:
    """When the periodic destruction last ran and runs next (the web's status view)."""
    last = state.destructions.last_run(finished=False, commands=PERIODIC_COMMANDS)
    if not cfg.retention:
        return Schedule(last, None)
    moment = now or datetime.now(UTC)
    if last is None:
        return Schedule(None, moment)
    return Schedule(last, last.started_at + timedelta(days=cfg.destruction.every_days))


def _one_pass(cfg: Config, state: State, store: S3Store, stop: threading.Event,
              counter: DestroyedCounter) -> None:  # fmt: skip
    plan = plan_retention(state, Rules(cfg.retention, cfg.s3), datetime.now(UTC))
    if len(plan.due) > cfg.destruction.max_per_run:
        record_stopped(state, plan, command=DAEMON_COMMAND, limit=cfg.destruction.max_per_run)
        return
    execute(state, store, plan, command=DAEMON_COMMAND, stop=stop.is_set, on_destroyed=counter)


async def destroy_periodically(
    cfg: Config, state: State, store: S3Store, counter: DestroyedCounter
) -> None:
    """Run until cancelled: a destruction pass whenever the period has passed since the last
    one. A pass runs in a thread; cancelling stops it between two recordings."""
    if not cfg.retention:
        log.warning("retention_off", reason="no [[retention]] rule: recordings are kept forever")
        return
    stop = threading.Event()
    try:
        while True:
            due = await asyncio.to_thread(schedule, cfg, state)
            wait_s = (
                0.0 if due.next_at is None else (due.next_at - datetime.now(UTC)).total_seconds()
            )
            if wait_s > 0:
                await asyncio.sleep(min(wait_s, _RECHECK_S))
                continue
            work = asyncio.ensure_future(
                asyncio.to_thread(_one_pass, cfg, state, store, stop, counter)
            )
            try:
                await asyncio.shield(work)
            except asyncio.CancelledError:
                # Stop between two recordings and let the one under way finish (the state is
                # closed after this returns).
                stop.set()
                with contextlib.suppress(Exception):
                    await work
                raise
            except Exception as error:  # a pass that failed must not end the daemon
                log.exception("destruction_error", error=type(error).__name__)
                await asyncio.sleep(min(cfg.destruction.every_days * 86400, _RECHECK_S))
    finally:
        stop.set()
