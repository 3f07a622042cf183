"""What a person types into the lifecycle commands, checked before anything is read or
deleted: a phone number (any spelling, digits only), a request or case reference, a yes on a
terminal."""

from __future__ import annotations

import re
import sys
from typing import Final, TextIO

from archiver.state import InvalidQuery, search_number

__all__ = ["BadInput", "confirm", "number_key_of", "reference"]

_REFERENCE_RE: Final = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.:/#-]{0,63}")


class BadInput(ValueError):
    """A value given on the command line that cannot be used; `reason` says why (it may be
    printed: it never carries more than the user typed)."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def number_key_of(text: str) -> str:
    """The searchable form of a phone number or extension typed in any spelling (`+90 312 332
    04 04`, `03123320404`, `100`). Raise `BadInput` for letters or anything but digits, one
    leading `+`, blanks, dashes, dots and brackets."""
    try:
        return search_number(text)
    except InvalidQuery:
        raise BadInput(
            f"{text!r} is not a phone number: digits only, with an optional leading + and "
            "spaces, dashes, dots or brackets between them"
        ) from None


def reference(text: str, what: str) -> str:
    """A request or case reference: 1-64 of A-Z a-z 0-9 _ . : / # -, starting with a letter
    or digit. Raise `BadInput`."""
    if _REFERENCE_RE.fullmatch(text) is None:
        raise BadInput(
            f"{what} {text!r} is not a reference: 1-64 of A-Z a-z 0-9 _ . : / # -, starting "
            "with a letter or digit"
        )
    return text


def confirm(question: str, *, stdin: TextIO | None = None, stderr: TextIO | None = None) -> bool:
    """Ask `question` on the terminal; True only when the answer is `yes`."""
    source, sink = stdin or sys.stdin, stderr or sys.stderr
    sink.write(f"{question} Type yes to go on: ")
    sink.flush()
    answer = source.readline()
    return answer.strip().lower() == "yes"
