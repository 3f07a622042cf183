"""Telling "no recordings" from "the listing command did not run".

`system_cmd.cgi` runs its command in a shell and shows only stdout: a command the firmware
cannot run (a query it decoded differently, a missing `find`, a broken script) prints its error
to stderr and the page comes back empty, exactly like a day without calls. So an empty `find`
is believed only when the PBX shows it can answer: the documented folder listing of the
recording root names at least one trunk folder, and a recording archived a short while ago is
still found by its exact name.
"""

from __future__ import annotations

import re
from typing import Final

from archiver.pbx import Listing, PbxClient

__all__ = ["RECENT_S", "explain_empty_listing", "name_pattern"]

# "A short while ago": recordings stay on the PBX for days; one archived within this window
# must still be there.
RECENT_S: Final = 6 * 3600.0
_PATTERN_CHARS: Final = re.compile(r"[A-Za-z0-9][A-Za-z0-9+.-]*")
_MAX_PATTERN_CHARS: Final = 64


def name_pattern(name: str) -> str | None:
    """A find pattern that matches `name` (its first 64 characters), or None if the name has
    characters a pattern may not carry."""
    head = name[:_MAX_PATTERN_CHARS]
    return head if _PATTERN_CHARS.fullmatch(head) else None


async def explain_empty_listing(client: PbxClient, recent_name: str | None) -> str | None:
    """Given that `find` listed nothing, return why that cannot be believed, or None if the PBX
    showed its commands run. `recent_name` is a recording of this PBX archived a short while
    ago (None if there is none). Raise PbxError if the PBX does not answer."""
    folders = await client.list_folders()
    if not folders.lines:
        return (
            "the PBX listed no recording folder at all: its commands are not running "
            "(system_cmd.cgi answers empty; run `archiver doctor`)"
        )
    pattern = name_pattern(recent_name) if recent_name is not None else None
    if pattern is None or recent_name is None:
        return None
    found = await client.find(pattern)
    if not _names(found).intersection({recent_name}):
        return (
            f"find did not list {recent_name}, archived a short while ago: its find command is "
            "not running (run `archiver doctor`)"
        )
    return None


def _names(listing: Listing) -> set[str]:
    return {line.rstrip().rpartition("/")[2] for line in listing.lines}
