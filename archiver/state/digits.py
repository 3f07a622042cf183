"""What a typed number means for the catalogue search, and which party is an extension.

A leaf (imports nothing of ours but nothing at all of the state), so the web can read numbers
and directions the same way the catalogue searches them. The prefixes of a country (national
`0`, country code `90`, international `00` for Turkey) come from `phonenumbers`' metadata.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Final

import phonenumbers

__all__ = [
    "DIRECTIONS",
    "DialPlan",
    "InvalidNumberText",
    "NumberMatch",
    "PbxDialPlan",
    "country_prefixes",
    "match_number",
    "party_digits",
]

DIRECTIONS: Final = ("in", "out", "internal")
_SEPARATORS: Final = str.maketrans("", "", " -().\t\u00a0/")
_MAX_CHARS: Final = 32
# Below this many digits the trigram index cannot look inside a party: an exact match instead.
_TRIGRAM: Final = 3


class InvalidNumberText(ValueError):
    """The number box holds something that is not a number; `reason` never echoes it."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


@dataclass(frozen=True, slots=True)
class PbxDialPlan:
    """How one PBX's numbers read: its country (ISO 3166 code, e.g. `TR`) and the longest
    extension (a party of at most this many digits is an extension of the PBX)."""

    country: str = "TR"
    extension_digits: int = 6

    def is_extension(self, party: str) -> bool:
        return party.isascii() and party.isdigit() and len(party) <= self.extension_digits


@dataclass(frozen=True, slots=True)
class DialPlan:
    """Every PBX's `PbxDialPlan`: `default` for a PBX not named in `pbxs`."""

    default: PbxDialPlan = PbxDialPlan()
    pbxs: tuple[tuple[str, PbxDialPlan], ...] = ()

    def for_pbx(self, pbx: str) -> PbxDialPlan:
        return next((plan for name, plan in self.pbxs if name == pbx), self.default)

    def direction(self, pbx: str, caller: str, callee: str) -> str | None:
        """`in` (only the callee is an extension), `out` (only the caller), `internal` (both),
        None (neither: a call between two outside numbers, or unknown parties)."""
        plan = self.for_pbx(pbx)
        inside = (plan.is_extension(caller), plan.is_extension(callee))
        return {(False, True): "in", (True, False): "out", (True, True): "internal"}.get(inside)


@dataclass(frozen=True, slots=True)
class NumberMatch:
    """What a typed number matches, in a party's digits: parties starting with one of
    `prefixes`; or, when `bare_prefix` is set, also longer-than-extension parties starting with
    it (the national number stored without any prefix); or `anywhere` inside a party (3 digits
    or more); or a party equal to `exact` (1 or 2 digits)."""

    prefixes: tuple[str, ...] = ()
    bare_prefix: str | None = None
    anywhere: str | None = None
    exact: str | None = None


def party_digits(party: str) -> str:
    """The ASCII digits of a caller or callee, in order (`+905325127222` → `905325127222`)."""
    return "".join(char for char in party if char.isascii() and char.isdigit())


@functools.cache
def country_prefixes(country: str) -> tuple[str, str, tuple[str, ...]]:
    """(country code, national prefix, international prefixes) of `country`: for `TR`
    ("90", "0", ("00",)). Raise ValueError for a code phonenumbers does not know."""
    meta = phonenumbers.PhoneMetadata.metadata_for_region(country.upper())
    if meta is None:
        raise ValueError(f"unknown country code {country!r} (ISO 3166, e.g. TR, US, DE)")
    code = str(phonenumbers.country_code_for_region(country.upper()))
    national = meta.national_prefix or ""
    international = meta.preferred_international_prefix or meta.international_prefix or ""
    # Some countries give a pattern (`00(?:1|2)`); its plain leading digits are what people dial.
    plain = "".join(
        char for char in international.split("(")[0].split("[")[0].split("|")[0] if char.isdigit()
    )
    return code, national, (plain,) if plain else ()


def match_number(text: str, country: str) -> NumberMatch:
    """Read what a user typed in the number box for a PBX of `country`.

    Spaces, dashes, dots, slashes and brackets are dropped; what remains must be digits with
    at most one leading `+`. Digits that begin with the country's national prefix, its country
    code, or an international prefix and its country code (`0532`, `90532`, `+90532`,
    `0090532`) match every party that starts with that national number in any spelling;
    other digits match anywhere. Raise `InvalidNumberText`.
    """
    compact = text.translate(_SEPARATORS)
    plus = compact.startswith("+")
    digits = compact[1:] if plus else compact
    if len(compact) > _MAX_CHARS:
        raise InvalidNumberText(f"a number has at most {_MAX_CHARS} characters")
    if not digits or not (digits.isascii() and digits.isdigit()):
        raise InvalidNumberText(
            "a number is digits only (spaces, dashes and one leading + allowed)"
        )
    code, national_prefix, internationals = country_prefixes(country)
    national = _national_part(digits, plus, code, national_prefix, internationals)
    if national:
        spellings = {national_prefix + national, code + national}
        spellings.update(prefix + code + national for prefix in internationals)
        return NumberMatch(prefixes=tuple(sorted(spellings)), bare_prefix=national)
    if len(digits) >= _TRIGRAM:
        return NumberMatch(anywhere=digits)
    return NumberMatch(exact=digits)


def _national_part(
    digits: str, plus: bool, code: str, national_prefix: str, internationals: tuple[str, ...]
) -> str | None:
    if plus:
        return digits[len(code) :] if digits.startswith(code) else None
    for prefix in internationals:
        if digits.startswith(prefix + code):
            return digits[len(prefix + code) :]
    if digits.startswith(code):
        return digits[len(code) :]
    if national_prefix and digits.startswith(national_prefix):
        return digits[len(national_prefix) :]
    return None
