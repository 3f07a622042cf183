"""What a destruction run or an erasure request would do, before it does anything: the
recordings due (the retention rules expired them and no hold covers them), those kept and why.
Both the dry run and the run itself work from this plan; the run checks each recording again
when it claims it (a hold added meanwhile still wins)."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta

from archiver.retention.destroy import Kept, Target
from archiver.retention.rules import Rules, Verdict
from archiver.state import CatalogueEntry, State

__all__ = ["Plan", "plan_erasure", "plan_retention"]

_PAGE = 1000


@dataclass
class Plan:
    """`due`: to destroy, in order; `kept`: not to destroy, with why; `verdicts`: the rule
    behind each recording judged (by object key); `checked`: how many archived recordings
    were looked at; `waiting`: past their keep_days but under the store's lock (not due)."""

    now: datetime
    due: list[Target] = field(default_factory=list)
    kept: list[Kept] = field(default_factory=list)
    verdicts: dict[str, Verdict] = field(default_factory=dict)
    checked: int = 0
    waiting: int = 0


def _held(state: State, entry: CatalogueEntry) -> Kept | None:
    holds = state.holds.covering(entry)
    if not holds:
        return None
    cases = tuple(dict.fromkeys(hold.case_ref for hold in holds))
    return Kept(entry, f"held (case {', '.join(cases)})", cases)


def plan_retention(state: State, rules: Rules, now: datetime) -> Plan:
    """Every archived recording whose rule's keep_days (and the store's lock) have passed."""
    plan = Plan(now)
    shortest = rules.shortest_keep_days
    if shortest is None:
        return plan
    cutoff = int((now - timedelta(days=shortest)).timestamp()) + 1
    after: tuple[int, str] | None = None
    while True:
        page = state.destructions.archived(started_before_s=cutoff, after=after, limit=_PAGE)
        for entry in page:
            plan.checked += 1
            verdict = rules.verdict(entry)
            if verdict is None:
                continue
            if not verdict.due(now):
                kept_long = now >= entry.started_at + timedelta(days=verdict.keep_days)
                if verdict.store_locked_until is not None and kept_long:
                    plan.waiting += 1
                continue
            plan.verdicts[entry.object_key] = verdict
            held = _held(state, entry)
            if held is not None:
                plan.kept.append(held)
            else:
                plan.due.append(Target(entry, "retention", verdict.basis))
        if len(page) < _PAGE:
            return plan
        after = (int(page[-1].started_at.timestamp()), page[-1].object_key)


def plan_erasure(state: State, rules: Rules, number: str, reference: str, now: datetime) -> Plan:
    """Every archived recording with `number` (a `number_key`) as caller or callee: due unless
    a hold covers it, its rule's min_days have not passed, or the store's lock has not ended."""
    plan = Plan(now)
    for entry in state.destructions.of_number(number):
        plan.checked += 1
        held = _held(state, entry)
        if held is not None:
            plan.kept.append(held)
            continue
        verdict = rules.verdict(entry)
        if verdict is not None:
            plan.verdicts[entry.object_key] = verdict
            if not verdict.erasable(now):
                plan.kept.append(_too_young(entry, verdict))
                continue
        plan.due.append(Target(entry, "erasure", f"request {reference}"))
    return plan


def _too_young(entry: CatalogueEntry, verdict: Verdict) -> Kept:
    day = verdict.erasable_at.date().isoformat()
    if verdict.store_locked_until is not None and verdict.erasable_at == verdict.store_locked_until:
        why = f"locked in the store ([s3] retain_days) until {day}"
    else:
        why = f"{verdict.label} min_days={verdict.min_days}: may be erased from {day}"
    return Kept(entry, why, may_go_at=verdict.erasable_at)
