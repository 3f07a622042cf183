"""A progress bar for interactive backfills: an `Observer` that draws with tqdm.

The one way to follow progress is an `Observer` (metrics use the same events); this one adds
each listed day's due recordings to the bar's total and advances it as each recording ends.
"""

from __future__ import annotations

from datetime import datetime
from typing import TextIO

from tqdm import tqdm

from archiver.observe import NullObserver

__all__ = ["ProgressBar"]


class ProgressBar(NullObserver):
    """Draws on `stream` (a terminal); `close()` when done."""

    def __init__(self, stream: TextIO) -> None:
        self._bar = tqdm(unit="rec", desc="archiving", file=stream, total=0)

    def listed(self, pbx: str, *, ok: bool, discovered: int, due: int) -> None:
        self._bar.total = (self._bar.total or 0) + due
        self._bar.refresh()

    def finished(self, pbx: str, outcome: str) -> None:
        self._bar.update(1)

    def paused(self, pbx: str, until: datetime) -> None:
        self._bar.set_postfix_str(f"{pbx} paused until {until:%Y-%m-%d %H:%M} (PBX time)")

    def close(self) -> None:
        self._bar.close()
