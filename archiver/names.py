"""Recording names: parse what the PBX lists into a validated, frozen `Recording`.

Everything here is untrusted input turned into trusted values. A name that passes `parse_path` can
be placed into a URL, a local file name and an S3 key: its fields come from a strict allow-list
(ASCII letters, digits, ``+``, ``_``, ``.`` and ``-`` only where the format puts them), so it can
carry no ``/``, ``..``, whitespace, control characters or shell metacharacters.

This module imports nothing of ours.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from zoneinfo import ZoneInfo

__all__ = [
    "MONITOR_ROOT",
    "RECORDING_ROOT",
    "InvalidName",
    "Recording",
    "parse_name",
    "parse_path",
]

MONITOR_ROOT = "/var/spool/asterisk/monitor/"
RECORDING_ROOT = MONITOR_ROOT + "recording/"

# Caller and callee: Asterisk writes CALLERID(num) and the dialled extension. Seen in the wild:
# digits, a leading "+", anonymous/unknown, empty. No hyphen: keeps the grammar unambiguous.
_PARTY = r"[A-Za-z0-9+]{0,64}"
# ${UNIQUEID} is EPOCH.SEQ, or SYSTEMNAME-EPOCH.SEQ when Asterisk's systemname is set.
_UNIQUEID = r"(?:[A-Za-z0-9_]{1,32}-)?[0-9]{9,11}\.[0-9]{1,10}"
_NAME_RE = re.compile(
    rf"(?P<date>[0-9]{{8}})-(?P<time>[0-9]{{6}})-(?P<caller>{_PARTY})-(?P<callee>{_PARTY})"
    rf"-(?P<uniqueid>{_UNIQUEID})-(?P<duration>[0-9]{{1,7}})\.(?P<ext>gsm|wav|WAV|wav49)"
)
# A trunk folder such as trunk-sip-908502591905. Starts alphanumeric, so never '.' or '..'.
_FOLDER_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_+-]{0,63}")
_MAX_LINE_CHARS = 512


class InvalidName(ValueError):
    """A listed line is not a recording name we accept; `reason` says why (safe to log)."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


@dataclass(frozen=True, slots=True)
class Recording:
    """One call recording on one PBX, parsed from its path. Every field is allow-listed."""

    pbx: str
    folder: str
    name: str
    day: date
    caller: str
    callee: str
    uniqueid: str
    duration_s: int
    extension: str
    started_at: datetime  # aware, in the PBX's time zone

    @property
    def relative_path(self) -> str:
        """The `filename=` of fileget.cgi: the path below /var/spool/asterisk/monitor/."""
        return f"recording/{self.folder}/{self.name}"

    @property
    def key(self) -> str:
        """Identity in the ledger: unique per PBX, stable across polls."""
        return f"{self.pbx}/{self.folder}/{self.name}"

    @property
    def uniqueid_epoch_s(self) -> int:
        """UTC seconds of channel creation, from the uniqueid (a cross-check of the time zone)."""
        return int(self.uniqueid.rsplit("-", 1)[-1].split(".", 1)[0])

    @property
    def ended_at(self) -> datetime:
        return self.started_at + timedelta(seconds=self.duration_s)


def _checked_line(line: str) -> str:
    if len(line) > _MAX_LINE_CHARS:
        raise InvalidName(f"line longer than {_MAX_LINE_CHARS} characters")
    if not line.isascii() or not line.isprintable():
        raise InvalidName("non-ASCII or control characters")
    return line


def parse_name(pbx: str, folder: str, name: str, tz: ZoneInfo) -> Recording:
    """Given a trunk folder and a file name, return the `Recording`.

    Raise `InvalidName` with a reason if either does not match the PBX's format exactly, or if
    the date and time are not a real local time.
    """
    _checked_line(folder)
    _checked_line(name)
    if _FOLDER_RE.fullmatch(folder) is None:
        raise InvalidName("folder is not a trunk folder name")
    match = _NAME_RE.fullmatch(name)
    if match is None:
        raise InvalidName("not DATE-TIME-CALLER-CALLEE-UNIQUEID-DURATION.EXT")
    try:
        # The regex fixed 8 + 6 digits; datetime() checks the ranges as strptime would, at a
        # fifth of its cost (strptime was half the CPU of a poll over 20,000 archived names).
        d, t = match["date"], match["time"]
        naive = datetime(
            int(d[:4]), int(d[4:6]), int(d[6:]), int(t[:2]), int(t[2:4]), int(t[4:])
        )  # fmt: skip
    except ValueError:
        raise InvalidName("date or time out of range") from None
    return Recording(
        pbx=pbx,
        folder=folder,
        name=name,
        day=naive.date(),
        caller=match["caller"],
        callee=match["callee"],
        uniqueid=match["uniqueid"],
        duration_s=int(match["duration"]),
        extension=match["ext"],
        started_at=naive.replace(tzinfo=tz),
    )


def parse_path(pbx: str, path: str, tz: ZoneInfo) -> Recording:
    """Given one line of `find` output (an absolute path), return the `Recording`.

    The path must be `/var/spool/asterisk/monitor/recording/FOLDER/NAME` exactly: no deeper
    folders, no `..`. Trailing CR (CRLF listings) and surrounding blanks are tolerated; anything
    else raises `InvalidName`.
    """
    line = _checked_line(path.strip())
    if not line.startswith(RECORDING_ROOT):
        raise InvalidName("path is not below the recording folder")
    parts = line[len(RECORDING_ROOT) :].split("/")
    if len(parts) != 2:
        raise InvalidName("path is not recording/FOLDER/NAME")
    return parse_name(pbx, parts[0], parts[1], tz)
