"""Which bad listing lines get a log line: each when first seen, within bounds.

A hostile PBX can send 100,000 junk lines a poll, each poll different. Remembering every line
seen costs memory without bound, and stopping at a fixed number goes silent for ever after it.
Instead the last `remember` lines logged are kept (an LRU: one forgotten is logged again later,
which is fine), at most `per_listing` new lines are logged per listing, and the rest of that
listing is summed up in one `invalid_names_not_logged` event; they stay unremembered, so later
polls log them in turn. Every bad line is still counted (`PollReport.invalid`) every poll.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Iterable
from typing import Final

import structlog

__all__ = ["InvalidNameLog"]

log = structlog.get_logger(__name__)

_REMEMBER: Final = 10_000
_PER_LISTING: Final = 50
_MARKER_CHARS: Final = 600
_SHOWN_CHARS: Final = 200


class InvalidNameLog:
    """Logs `invalid_name` events for bad lines, bounded as the module says."""

    def __init__(self, *, remember: int = _REMEMBER, per_listing: int = _PER_LISTING) -> None:
        self.remember = remember
        self.per_listing = per_listing
        self._seen: OrderedDict[tuple[str, str], None] = OrderedDict()

    def log(self, pbx: str, invalid: Iterable[tuple[str, str]]) -> int:
        """Log the (line, reason) pairs of one listing not logged lately, at most `per_listing`;
        return how many new ones were left for a later poll."""
        logged = left = 0
        for line, reason in invalid:
            marker = (pbx, line[:_MARKER_CHARS])
            if marker in self._seen:
                self._seen.move_to_end(marker)
                continue
            if logged >= self.per_listing:
                left += 1
                continue
            logged += 1
            self._seen[marker] = None
            if len(self._seen) > self.remember:
                self._seen.popitem(last=False)
            # ascii() escapes control and look-alike characters: the log shows what was sent.
            log.warning("invalid_name", pbx=pbx, line=ascii(line[:_SHOWN_CHARS]), reason=reason)
        if left:
            log.warning(
                "invalid_names_not_logged",
                pbx=pbx,
                count=left,
                hint=f"at most {self.per_listing} new bad lines are logged per listing",
            )
        return left
