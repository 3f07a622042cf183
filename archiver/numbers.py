"""Phone numbers as the PBX reports them: `90` and the 10-digit national number.

A leaf (imports nothing of ours), so the call log, the callbacks and the web can all normalise a
number without importing the code that places calls.
"""

from __future__ import annotations

from typing import Final

__all__ = ["COUNTRY_CODE", "InvalidNumber", "normalise_number"]

COUNTRY_CODE: Final = "90"  # Turkey: the PBX reports every dialled number as 90 + 10 digits
_NATIONAL_DIGITS: Final = 10
_MAX_INPUT_CHARS: Final = 32


class InvalidNumber(ValueError):
    """A phone number we will not dial; `reason` is safe to print (it never echoes the input)."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def normalise_number(text: str) -> str:
    """Return `text` as the PBX reports it: `90` and the 10-digit national number.

    Accepted: `903123320404`, `+903123320404`, `00903123320404`, `03123320404` (national trunk
    prefix) and `3123320404`. Only ASCII digits, after one optional leading `+`: spaces, dashes and
    anything else are refused, so nothing but digits can reach a URL. Raise `InvalidNumber`.
    """
    if len(text) > _MAX_INPUT_CHARS:
        raise InvalidNumber(f"number longer than {_MAX_INPUT_CHARS} characters")
    digits = text[1:] if text.startswith("+") else text
    if not digits or not (digits.isascii() and digits.isdigit()):
        raise InvalidNumber("number must be digits only (an optional leading + is allowed)")
    if text.startswith("+"):
        national = _strip_country(digits)
    elif digits.startswith("00"):
        national = _strip_country(digits[2:])
    elif len(digits) == len(COUNTRY_CODE) + _NATIONAL_DIGITS:
        national = _strip_country(digits)
    elif len(digits) == 1 + _NATIONAL_DIGITS and digits.startswith("0"):
        national = digits[1:]
    else:
        national = digits
    if len(national) != _NATIONAL_DIGITS or national.startswith("0"):
        raise InvalidNumber(
            f"not a Turkish number: expected {COUNTRY_CODE} or 0 and {_NATIONAL_DIGITS} digits"
        )
    return COUNTRY_CODE + national


def _strip_country(digits: str) -> str:
    if not digits.startswith(COUNTRY_CODE):
        raise InvalidNumber(f"only numbers in country code {COUNTRY_CODE} can be dialled")
    return digits[len(COUNTRY_CODE) :]
