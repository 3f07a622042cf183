"""One destruction pass, as `archiver retention run`, `archiver erase` and `archiver run`'s
periodic destruction do it: record the run, finish what a killed run left claimed, destroy the
plan's recordings, record how it ended."""

from __future__ import annotations

import getpass
from collections.abc import Callable
from dataclasses import dataclass

import structlog

from archiver.retention.destroy import Destroyer, Outcome
from archiver.retention.plan import Plan
from archiver.s3 import S3Store
from archiver.state import Destruction, State

__all__ = ["DestroyedCounter", "RunResult", "execute", "record_stopped", "username"]

log = structlog.get_logger(__name__)


def username() -> str:
    """Who runs this command, for the destruction log: the operating system's user (under
    systemd's DynamicUser, the unit's)."""
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return "unknown"


@dataclass(frozen=True, slots=True)
class RunResult:
    """A pass's outcome (the resumed claims included) and how it was recorded."""

    outcome: Outcome
    outcome_word: str
    run_id: int


class DestroyedCounter:
    """`archiver_destroyed_total{reason}` for `archiver run`'s /metrics (both reasons shown,
    zeros included, so a dashboard sees the series before the first destruction)."""

    def __init__(self) -> None:
        self._counts = {"retention": 0, "erasure": 0}

    def __call__(self, destruction: Destruction) -> None:
        self._counts[destruction.reason] = self._counts.get(destruction.reason, 0) + 1

    def samples(self) -> list[tuple[str, dict[str, str], float]]:
        return [
            ("archiver_destroyed_total", {"reason": reason}, float(count))
            for reason, count in self._counts.items()
        ]


def execute(
    state: State,
    store: S3Store,
    plan: Plan,
    *,
    command: str,
    stop: Callable[[], bool] = lambda: False,
    on_destroyed: Callable[[Destruction], None] | None = None,
) -> RunResult:
    """Destroy `plan.due` (after finishing any claims a killed run left), recorded as one run
    of `command`. The plan's kept recordings are counted with those kept at claim time."""
    run_id = state.destructions.start_run(command)
    destroyer = Destroyer(
        state, store, command=command, username=username(), stop=stop, on_destroyed=on_destroyed
    )
    outcome = destroyer.finish_pending()
    if not outcome.interrupted:
        outcome.add(destroyer.destroy(plan.due))
    outcome.kept = plan.kept + outcome.kept
    word = "interrupted" if outcome.interrupted else "some_failed" if outcome.failed else "ok"
    state.destructions.finish_run(
        run_id,
        destroyed=len(outcome.destroyed),
        kept=len(outcome.kept),
        failed=len(outcome.failed),
        outcome=word,
    )
    log.info(
        "destruction_run",
        command=command,
        destroyed=len(outcome.destroyed),
        kept=len(outcome.kept),
        failed=len(outcome.failed),
        elsewhere=outcome.elsewhere,
        outcome=word,
    )
    return RunResult(outcome, word, run_id)


def record_stopped(state: State, plan: Plan, *, command: str, limit: int) -> None:
    """Record a run that stopped before destroying anything: more was due than `limit`."""
    run_id = state.destructions.start_run(command)
    state.destructions.finish_run(run_id, destroyed=0, kept=len(plan.kept), failed=0,
                                  outcome="stopped")  # fmt: skip
    log.error(
        "destruction_stopped",
        command=command,
        due=len(plan.due),
        max_per_run=limit,
        fix="check the [[retention]] rules; if they are right run `archiver retention run "
        "--yes --force` once, or raise [destruction] max_per_run",
    )
