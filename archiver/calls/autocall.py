"""Placing an automatic call: the number and parameters of `autocalls.cgi` (pbx-api.md section 5).

Everything that reaches the URL is built here from validated values: the number is digits only,
normalised to the `90…` form the PBX reports back in its call-result callback, and every other
parameter is an integer or an allow-listed string. The meaning of `dp`, `dest` and `detail` is
undocumented; they are passed through from configuration. The format of a `datetime` other than
`-1` ("now") is undocumented too: we send the PBX's local time as `YYYY-MM-DD HH:MM:SS` (the
form Asterisk tools use), which is a guess to confirm on a real PBX.

This module imports nothing of ours but `config` and `numbers`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime
from typing import Final
from zoneinfo import ZoneInfo

from archiver.config import DETAIL_PATTERN, AutocallConfig
from archiver.numbers import InvalidNumber, normalise_number

__all__ = ["NOW", "AutocallRequest", "build_request", "pbx_datetime"]

NOW: Final = "-1"
_DETAIL_RE: Final = re.compile(DETAIL_PATTERN)


def pbx_datetime(when: datetime | None, tz: ZoneInfo, *, now: datetime) -> str:
    """`-1` for "now" (`when` None), else `when` in the PBX's local time as
    `YYYY-MM-DD HH:MM:SS`. A naive `when` is PBX local time. Raise ValueError if it is past."""
    if when is None:
        return NOW
    aware = when.replace(tzinfo=tz) if when.tzinfo is None else when
    if aware < now:
        raise ValueError("--at is in the past")
    return aware.astimezone(tz).strftime("%Y-%m-%d %H:%M:%S")


@dataclass(frozen=True, slots=True)
class AutocallRequest:
    """One validated autocalls.cgi request (without credentials, which `PbxClient` adds)."""

    number: str
    max_retries: int
    retry_interval_s: int
    dp: int
    dest: int
    detail: str
    datetime: str  # NOW or "YYYY-MM-DD HH:MM:SS" (PBX local time)

    def __post_init__(self) -> None:
        if normalise_number(self.number) != self.number:
            raise InvalidNumber("number is not normalised")
        for name in ("max_retries", "retry_interval_s", "dp", "dest"):
            value = getattr(self, name)
            if not isinstance(value, int) or not 0 <= value <= 86400:
                raise ValueError(f"{name} must be an integer in 0..86400")
        if _DETAIL_RE.fullmatch(self.detail) is None:
            raise ValueError("detail must be 0-64 of A-Z a-z 0-9 space _ . , : @ + -")
        if self.datetime != NOW and not re.fullmatch(
            r"[0-9]{4}-[0-9]{2}-[0-9]{2} [0-9]{2}:[0-9]{2}:[0-9]{2}", self.datetime
        ):
            raise ValueError("datetime must be -1 or YYYY-MM-DD HH:MM:SS")

    def params(self) -> dict[str, str]:
        """The query parameters, in the documented order (credentials excluded)."""
        return {
            "action": "call",
            "number": self.number,
            "mr": str(self.max_retries),
            "rt": str(self.retry_interval_s),
            "dp": str(self.dp),
            "dest": str(self.dest),
            "detail": self.detail,
            "datetime": self.datetime,
        }


def build_request(
    number: str,
    defaults: AutocallConfig,
    *,
    max_retries: int | None = None,
    retry_interval_s: int | None = None,
    dp: int | None = None,
    dest: int | None = None,
    detail: str | None = None,
    datetime_param: str = NOW,
) -> AutocallRequest:
    """Given what the user typed and the `[autocall]` defaults, return the request.
    Raise `InvalidNumber` or ValueError (with a reason that never echoes the input)."""

    def pick(given: int | None, default: int) -> int:
        return default if given is None else given

    return AutocallRequest(
        number=normalise_number(number),
        max_retries=pick(max_retries, defaults.max_retries),
        retry_interval_s=pick(retry_interval_s, defaults.retry_interval_s),
        dp=pick(dp, defaults.dp),
        dest=pick(dest, defaults.dest),
        detail=defaults.detail if detail is None else detail,
        datetime=datetime_param,
    )
