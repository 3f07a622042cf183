"""One search result as the page shows it: the PBX's local time (with its zone when the
archive's PBXs differ), numbers written as people write them, the direction, and the labels
that name the row's controls."""

from __future__ import annotations

import functools
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

import phonenumbers

from archiver.state import CatalogueEntry, DialPlan, PbxDialPlan
from archiver.web.query import audio_url

__all__ = ["RowStyle", "readable_number", "row_view"]


@dataclass(frozen=True, slots=True)
class RowStyle:
    """How rows are written: the dial plan, each PBX's zone, whether to show the zone (the
    archive's PBXs have different offsets), the language's words and month names."""

    plan: DialPlan
    zones: dict[str, ZoneInfo]
    show_zone: bool
    words: dict[str, str]


@functools.lru_cache(maxsize=8192)
def readable_number(party: str, country: str, extension_digits: int) -> str:
    """`party` as people write it: nationally for `country` (`0532 512 72 22`),
    internationally for another (`+1 212-555-1234`); an extension, or anything phonenumbers
    cannot read as a valid number, as it is."""
    plan = PbxDialPlan(country, extension_digits)
    if not party or plan.is_extension(party):
        return party
    digits = party[1:] if party.startswith("+") else party
    if not (digits.isascii() and digits.isdigit()):
        return party
    for candidate, region in ((party, country), ("+" + digits, None)):
        try:
            number = phonenumbers.parse(candidate, region)
        except phonenumbers.NumberParseException:
            continue
        if not phonenumbers.is_valid_number(number):
            continue
        if phonenumbers.region_code_for_number(number) == country:
            text = phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.NATIONAL)
            # "(0312) 332 04 04" is written "0312 332 04 04" where the prefix is a trunk 0.
            if text.startswith("(0") and ")" in text:
                head, _, tail = text[1:].partition(")")
                text = head + tail
            return text
        return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.INTERNATIONAL)
    return party


def _zone_label(moment: datetime) -> str:
    name = moment.tzname() or ""
    return f"UTC{name}" if name[:1] in "+-" else name


def _duration(seconds: int) -> str:
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes}:{secs:02d}"


def _size(size_bytes: int | None) -> str:
    if size_bytes is None:
        return "?"
    if size_bytes < 1024 * 1024:
        return f"{size_bytes / 1024:.0f} KB"
    return f"{size_bytes / 1024 / 1024:.1f} MB"


def row_view(entry: CatalogueEntry, style: RowStyle) -> dict[str, Any]:
    """What one result row shows (escaped by the template, never here)."""
    words = style.words
    zone = style.zones.get(entry.pbx)
    local = entry.started_at.astimezone(zone) if zone is not None else entry.started_at
    plan = style.plan.for_pbx(entry.pbx)
    caller = readable_number(entry.caller, plan.country, plan.extension_digits)
    callee = readable_number(entry.callee, plan.country, plan.extension_digits)
    caller_shown = caller or words["unknown"]
    callee_shown = callee or words["unknown"]
    zone_label = _zone_label(local) if style.show_zone else ""
    when = local.strftime("%Y-%m-%d %H:%M:%S")
    months = words["months"].split(",")
    short_when = f"{local.day} {months[local.month - 1]} {local:%H:%M}"
    direction = style.plan.direction(entry.pbx, entry.caller, entry.callee)
    # The controls are named with their call: "Play 0532 512 72 22, 1 Dec 15:21".
    other = callee if direction == "out" else caller or callee
    label = f"{other or words['unknown']}, {short_when}"
    return {
        "key": entry.object_key,
        "started_at": entry.started_at.isoformat(),
        "when": when,
        "zone": zone_label,
        "caller": caller_shown,
        "callee": callee_shown,
        "caller_known": bool(caller),
        "callee_known": bool(callee),
        "duration": _duration(entry.duration_s),
        "duration_s": entry.duration_s,
        "dial_status": entry.dial_status or "",
        "size": _size(entry.size_bytes),
        "pbx": entry.pbx,
        "trunk": entry.trunk,
        "direction": direction or "",
        "direction_text": words[f"direction_{direction}"] if direction else "",
        "audio_url": audio_url(entry.object_key),
        "download_url": audio_url(entry.object_key) + "?download=1",
        "download_name": entry.download_name,
        "label": label,
        "now_label": f"{caller_shown} → {callee_shown}, {when} {zone_label}".strip(),
    }
