"""A PBX listing read as recordings: every line parsed by `names`, the ones that are not
recording names kept with their reason (never dropped silently).

Used by the daemon (which logs the invalid lines within bounds, `invalid_names`) and by
`archiver ls`.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from zoneinfo import ZoneInfo

from archiver.names import InvalidName, Recording, parse_path

__all__ = ["ParsedListing", "parse_listing"]


@dataclass(frozen=True)
class ParsedListing:
    """A listing's lines sorted into recordings and (line, reason) pairs that are not."""

    recordings: list[Recording]
    invalid: list[tuple[str, str]]


def parse_listing(pbx: str, lines: Iterable[str], tz: ZoneInfo) -> ParsedListing:
    """Parse every line with `parse_path`. Pure and thread-safe: run it off the event loop."""
    recordings: list[Recording] = []
    invalid: list[tuple[str, str]] = []
    for line in lines:
        try:
            recordings.append(parse_path(pbx, line, tz))
        except InvalidName as error:
            invalid.append((line, error.reason))
    return ParsedListing(recordings, invalid)
