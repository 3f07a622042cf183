"""Which `[[retention]]` rule covers an archived call, and the days that follow from it: when it
is due for destruction, and from when an erasure request may destroy it.

A call's direction comes from its parties, since the PBX's file name says only "caller, callee,
whatever the direction": an extension is 2 to 6 digits; both parties extensions is `internal`,
an extension calling anything else is `out`, anything else (an outside number, `anonymous`, an
empty caller) calling is `in`.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Final, Literal

from archiver.config import RetentionRule, S3Config
from archiver.state import CatalogueEntry, number_key, search_number

__all__ = ["Direction", "Rules", "Verdict", "direction_of", "is_extension"]

Direction = Literal["in", "out", "internal"]
_EXTENSION_RE: Final = re.compile(r"[0-9]{2,6}")


def is_extension(party: str) -> bool:
    return _EXTENSION_RE.fullmatch(party) is not None


def direction_of(caller: str, callee: str) -> Direction:
    """`internal`, `out` or `in`, from the parties (see the module's docstring)."""
    if is_extension(caller):
        return "internal" if is_extension(callee) else "out"
    return "in"


@dataclass(frozen=True, slots=True)
class Verdict:
    """What the rules say about one call: the rule (`label`, e.g. `retention[2]` or its name,
    and `keep_days`), when it is due for destruction (`due_at`: its start plus keep_days, or the
    store's retain-until date if later) and from when an erasure may destroy it
    (`erasable_at`: its start plus min_days, or the store's date if later)."""

    label: str
    keep_days: int
    min_days: int | None
    due_at: datetime
    erasable_at: datetime
    store_locked_until: datetime | None

    @property
    def basis(self) -> str:
        """The rule as the destruction log names it."""
        return f"{self.label} keep_days={self.keep_days}"

    def due(self, now: datetime) -> bool:
        return now >= self.due_at

    def erasable(self, now: datetime) -> bool:
        return now >= self.erasable_at


@dataclass(frozen=True, slots=True)
class _Compiled:
    label: str
    rule: RetentionRule
    numbers: frozenset[str]


class Rules:
    """The configured rules, ready to judge calls (the numbers in their searchable form)."""

    def __init__(self, rules: Sequence[RetentionRule], s3: S3Config) -> None:
        self._rules = tuple(
            _Compiled(
                rule.label(n),
                rule,
                frozenset(search_number(number) for number in rule.numbers or ()),
            )
            for n, rule in enumerate(rules)
        )
        self._retain_days = s3.retain_days

    def __bool__(self) -> bool:
        return bool(self._rules)

    @property
    def shortest_keep_days(self) -> int | None:
        """The fewest days any rule keeps a call (nothing younger can be due); None: no rule."""
        return min((c.rule.keep_days for c in self._rules), default=None)

    def verdict(self, entry: CatalogueEntry) -> Verdict | None:
        """The first rule that matches `entry`, and its days; None when no rule exists."""
        for compiled in self._rules:
            if self._matches(compiled, entry):
                return self._days(compiled, entry.started_at)
        return None

    def _matches(self, compiled: _Compiled, entry: CatalogueEntry) -> bool:
        rule = compiled.rule
        if rule.pbx is not None and rule.pbx != entry.pbx:
            return False
        if rule.trunk is not None and rule.trunk != entry.trunk:
            return False
        if rule.direction is not None and rule.direction != direction_of(
            entry.caller, entry.callee
        ):
            return False
        if compiled.numbers:
            parties = {number_key(entry.caller), number_key(entry.callee)}
            if not parties & compiled.numbers:
                return False
        return True

    def _days(self, compiled: _Compiled, started_at: datetime) -> Verdict:
        rule = compiled.rule
        locked = (
            None if self._retain_days is None else started_at + timedelta(days=self._retain_days)
        )
        due = started_at + timedelta(days=rule.keep_days)
        erasable = started_at + timedelta(days=rule.min_days or 0)
        if locked is not None:
            due, erasable = max(due, locked), max(erasable, locked)
        return Verdict(compiled.label, rule.keep_days, rule.min_days, due, erasable, locked)
