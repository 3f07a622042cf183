"""Which calls a user may see: a scope of PBX names and extension ranges.

A scope holds a call when the call came from one of its PBXs (`pbx`) and its caller or its callee
is one of its extensions (`extensions`); a part left out (None) holds every call. `WHOLE` holds
everything (the default for users the configuration does not name).

Extensions are strings of digits, compared as the PBX names them: a range `100-199` holds every
party of three digits from `100` to `199` (both ends); `90-110` holds `90`..`99` and `100`..`110`;
`0100-0199` holds only four-digit parties (a leading zero is part of the name). A single
extension `105` is the range `105-105`. The catalogue turns the same rule into SQL
(`spans`), so a page, an API answer and a single-key lookup agree.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Final

__all__ = ["WHOLE", "ExtensionRange", "InvalidScope", "Scope"]

_DIGITS: Final = re.compile(r"[0-9]{1,16}")
_MAX_RANGES: Final = 256


class InvalidScope(ValueError):
    """A scope cannot be built as written; `reason` names the value and what is wrong."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


@dataclass(frozen=True, slots=True)
class ExtensionRange:
    """Extensions `low`..`high` (digit strings), both ends included."""

    low: str
    high: str

    @classmethod
    def parse(cls, text: str) -> ExtensionRange:
        """`100-199` or `105`; raise `InvalidScope` naming what is wrong."""
        low, sep, high = text.strip().partition("-")
        if not sep:
            high = low
        shown = text[:40]
        if _DIGITS.fullmatch(low) is None or _DIGITS.fullmatch(high) is None:
            raise InvalidScope(f"extension range {shown!r}: write digits, e.g. 100-199 or 105")
        if len(low) != len(high) and low.startswith("0") and len(low) > 1:
            raise InvalidScope(
                f"extension range {shown!r}: a bound with a leading zero needs the other"
                " bound of the same length (e.g. 0100-0199)"
            )
        if (len(low), low) > (len(high), high):
            raise InvalidScope(f"extension range {shown!r}: the first bound is above the second")
        return cls(low, high)

    def spans(self) -> tuple[tuple[int, str, str], ...]:
        """The range as (length, first, last) runs of equal-length digit strings, for which
        string order is number order."""
        if len(self.low) == len(self.high):
            return ((len(self.low), self.low, self.high),)
        runs = []
        for length in range(len(self.low), len(self.high) + 1):
            first = self.low if length == len(self.low) else "1" + "0" * (length - 1)
            last = self.high if length == len(self.high) else "9" * length
            runs.append((length, first, last))
        return tuple(runs)

    def contains(self, party: str) -> bool:
        if _DIGITS.fullmatch(party) is None:
            return False
        return any(
            len(party) == length and first <= party <= last for length, first, last in self.spans()
        )

    def __str__(self) -> str:
        return self.low if self.low == self.high else f"{self.low}-{self.high}"


@dataclass(frozen=True, slots=True)
class Scope:
    """The calls a user may see. `pbx`: PBX names (None: any PBX); `extensions`: ranges one
    party of the call must fall in (None: any parties). Both given, both must hold."""

    pbx: frozenset[str] | None = None
    extensions: tuple[ExtensionRange, ...] | None = None

    @classmethod
    def parse(
        cls, pbx: Iterable[str] | None = None, extensions: Iterable[str] | None = None
    ) -> Scope:
        """A scope from configuration values; raise `InvalidScope` for a malformed range or an
        empty list (which would hide every call: leave the key out to mean 'all')."""
        names = None if pbx is None else frozenset(pbx)
        if names is not None and not names:
            raise InvalidScope("pbx = [] would hold no call: leave it out for every PBX")
        ranges = None
        if extensions is not None:
            ranges = tuple(ExtensionRange.parse(text) for text in extensions)
            if not ranges:
                raise InvalidScope(
                    "extensions = [] would hold no call: leave it out for every extension"
                )
            if len(ranges) > _MAX_RANGES:
                raise InvalidScope(f"at most {_MAX_RANGES} extension ranges per scope")
        return cls(names, ranges)

    @property
    def whole(self) -> bool:
        return self.pbx is None and self.extensions is None

    def holds(self, pbx: str, caller: str, callee: str) -> bool:
        """Whether a call of `pbx` between `caller` and `callee` is inside the scope."""
        if self.pbx is not None and pbx not in self.pbx:
            return False
        if self.extensions is None:
            return True
        return any(r.contains(caller) or r.contains(callee) for r in self.extensions)

    def union(self, other: Scope) -> Scope:
        """A scope holding what either holds, where it can be written as one scope (the same
        PBXs, or the same extensions, or either whole); otherwise the wider of each part (a
        user in two groups sees at least what each group sees)."""
        if self.whole or other.whole:
            return WHOLE
        pbx = None if self.pbx is None or other.pbx is None else self.pbx | other.pbx
        if self.extensions is None or other.extensions is None:
            return Scope(pbx, None)
        merged = tuple(dict.fromkeys((*self.extensions, *other.extensions)))
        return Scope(pbx, merged)

    def describe(self) -> str:
        """One line for pages and logs: `pbx istanbul; extensions 100-199, 205`."""
        if self.whole:
            return "everything"
        parts = []
        if self.pbx is not None:
            parts.append("pbx " + ", ".join(sorted(self.pbx)))
        if self.extensions is not None:
            parts.append("extensions " + ", ".join(str(r) for r in self.extensions))
        return "; ".join(parts)


WHOLE: Final = Scope()
