"""A bar chart as SVG text, drawn on the server (no JavaScript, no chart library).

Only numbers and dates reach the markup, and the title is escaped: nothing a PBX or a user sent
can become markup here.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import date
from html import escape
from typing import Final

__all__ = ["bar_chart"]

_WIDTH: Final = 720
_HEIGHT: Final = 220
_LEFT: Final = 40
_BOTTOM: Final = 30
_TOP: Final = 16


def _nice_max(value: int) -> int:
    """The smallest of 1, 2, 5 times 10^n that is at least `value` (at least 1)."""
    scale = 1
    while True:
        for step in (1, 2, 5):
            if step * scale >= value:
                return step * scale
        scale *= 10


def bar_chart(counts: Mapping[date, int], *, title: str) -> str:
    """An SVG of one bar per day in `counts` (in order), with the y axis from 0 to a round
    maximum, every fifth day labelled and each bar's count in its tooltip."""
    days = list(counts)
    top = _nice_max(max(counts.values(), default=0))
    plot_w = _WIDTH - _LEFT - 10
    plot_h = _HEIGHT - _BOTTOM - _TOP
    slot = plot_w / max(len(days), 1)
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {_WIDTH} {_HEIGHT}" '
        f'role="img" aria-label="{escape(title)}" class="chart">',
        f"<title>{escape(title)}</title>",
    ]
    for fraction in (0, 0.5, 1):
        y = _TOP + plot_h * (1 - fraction)
        parts.append(
            f'<line x1="{_LEFT}" x2="{_WIDTH - 10}" y1="{y:.1f}" y2="{y:.1f}" class="grid"/>'
            f'<text x="{_LEFT - 6}" y="{y + 4:.1f}" text-anchor="end" class="axis">'
            f"{round(top * fraction)}</text>"
        )
    for index, day in enumerate(days):
        count = counts[day]
        height = plot_h * count / top
        x = _LEFT + index * slot + slot * 0.15
        y = _TOP + plot_h - height
        parts.append(
            f'<rect x="{x:.1f}" y="{y:.1f}" width="{slot * 0.7:.1f}" height="{height:.1f}" '
            f'class="bar"><title>{day.isoformat()}: {count}</title></rect>'
        )
        if index % 5 == 0 or index == len(days) - 1:
            parts.append(
                f'<text x="{x + slot * 0.35:.1f}" y="{_HEIGHT - 10}" text-anchor="middle" '
                f'class="axis">{day.strftime("%d.%m")}</text>'
            )
    parts.append("</svg>")
    return "".join(parts)
