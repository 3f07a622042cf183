"""One check's outcome and the report of them all, as text (✓/✗ and the fix) or JSON."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Literal

__all__ = [
    "Check",
    "Status",
    "all_passed",
    "failed",
    "passed",
    "render_json",
    "render_text",
    "skipped",
]

Status = Literal["pass", "fail", "skip"]
_MARKS = {"pass": "\u2713", "fail": "\u2717", "skip": "-"}


@dataclass(frozen=True)
class Check:
    """`name` says what was checked; `detail` what was found (one line; configuration problems
    add `problems`, one each); `fix` is one line saying what to do, for a failure. Nothing in
    it may hold a secret: details are built from names, numbers and sanitised reasons."""

    name: str
    status: Status
    detail: str
    fix: str = ""
    problems: tuple[str, ...] = field(default_factory=tuple)

    @property
    def ok(self) -> bool:
        return self.status == "pass"


def passed(name: str, detail: str) -> Check:
    return Check(name, "pass", detail)


def failed(name: str, detail: str, fix: str, problems: Sequence[str] = ()) -> Check:
    return Check(name, "fail", detail, fix, tuple(problems))


def skipped(name: str, why: str) -> Check:
    return Check(name, "skip", why)


def render_text(checks: Sequence[Check]) -> str:
    """One line per check (`✓ name: detail`), the fix indented under a failure, a summary."""
    lines = []
    for check in checks:
        lines.append(f"{_MARKS[check.status]} {check.name}: {check.detail}")
        lines += [f"    {problem}" for problem in check.problems]
        if check.fix:
            lines.append(f"    fix: {check.fix}")
    bad = sum(check.status == "fail" for check in checks)
    skips = sum(check.status == "skip" for check in checks)
    passes = len(checks) - bad - skips
    if bad == 0:
        lines.append(f"all {passes} checks passed" + (f", {skips} not applicable" if skips else ""))
    else:
        lines.append(f"{bad} of {len(checks)} checks failed, {skips} skipped")
    return "\n".join(lines)


def all_passed(checks: Sequence[Check]) -> bool:
    """No check failed (a skipped one did not apply: callbacks off, no recording yet, or it
    came after a failure, which already counts)."""
    return not any(check.status == "fail" for check in checks)


def render_json(checks: Sequence[Check]) -> str:
    """`{"ok": bool, "checks": [{name, status, detail, fix, problems}, ...]}`."""
    items = [{**asdict(check), "problems": list(check.problems)} for check in checks]
    return json.dumps({"ok": all_passed(checks), "checks": items}, indent=2)
