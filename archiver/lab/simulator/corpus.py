"""A deterministic corpus of PBX call recordings: names, folders, formats and audio, from a seed.

The names are written by this module's own formatter on purpose: the simulator is the test oracle
for `archiver.names`, and sharing the parser's code would let one bug hide another.
"""

from __future__ import annotations

import fnmatch
import math
import random
import threading
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from typing import Literal
from zoneinfo import ZoneInfo

from archiver.lab.simulator import audio

MONITOR_DIR = "/var/spool/asterisk/monitor"
RECORDING_DIR = f"{MONITOR_DIR}/recording"
DEFAULT_TIMEZONE = "Europe/Istanbul"

AudioFormat = Literal["gsm", "wav_pcm", "wav_gsm", "wav_empty", "other", "wav_lying"]
"""`wav_empty` is a header-only WAV (unanswered call); `other` is a non-audio junk file;
`wav_lying` is a WAV whose header claims twice the audio it holds."""

_DEFAULT_EXTENSION: dict[AudioFormat, str] = {
    "gsm": "gsm",
    "wav_pcm": "wav",
    "wav_gsm": "WAV",
    "wav_empty": "wav",
    "other": "bin",
    "wav_lying": "wav",
}
_WORKDAY_START_S = 8 * 3600 + 30 * 60
_WORKDAY_END_S = 18 * 3600 + 30 * 60
_DOC_NUMBER = "903123320404"  # the number used throughout the PBX documentation's examples


@dataclass(frozen=True)
class SimRecording:
    """One file in the PBX's recording tree, and the truth about it.

    `duration_s` is the duration written in the name; it equals the audio's length except for
    `wav_empty` (zero samples). Junk entries have `valid=False`, `started_local=None` and empty
    caller, callee and uniqueid: the archiver must never store them.
    """

    folder: str
    name: str
    fmt: AudioFormat
    duration_s: int
    caller: str
    callee: str
    uniqueid: str
    started_local: datetime | None
    valid: bool
    size_bytes: int

    @property
    def path(self) -> str:
        """The absolute path on the PBX, as `find` prints it."""
        return f"{RECORDING_DIR}/{self.folder}/{self.name}"

    @property
    def relative_path(self) -> str:
        """The path relative to the monitor directory, as `fileget.cgi?filename=` takes it."""
        return f"recording/{self.folder}/{self.name}"

    def manifest_entry(self) -> dict[str, object]:
        """Return this recording as a JSON-able dict (times as ISO 8601 with offset)."""
        started = self.started_local
        return {
            "folder": self.folder,
            "name": self.name,
            "path": self.path,
            "relative_path": self.relative_path,
            "fmt": self.fmt,
            "duration_s": self.duration_s,
            "caller": self.caller,
            "callee": self.callee,
            "uniqueid": self.uniqueid,
            "started_local": started.isoformat() if started else None,
            "started_epoch_s": int(started.timestamp()) if started else None,
            "valid": self.valid,
            "size_bytes": self.size_bytes,
        }


def format_name(
    started_local: datetime,
    caller: str,
    callee: str,
    uniqueid: str,
    duration_s: int,
    extension: str,
) -> str:
    """Write a recording's file name the way the PBX does (pbx-api.md, "Recording file names")."""
    return f"{started_local:%Y%m%d-%H%M%S}-{caller}-{callee}-{uniqueid}-{duration_s}.{extension}"


def audio_stream_for(fmt: AudioFormat, duration_s: int, name: str = "") -> audio.AudioStream:
    """Return the bytes of a file of format `fmt`; `other` files' content derives from `name`."""
    if fmt == "gsm":
        return audio.gsm_raw_stream(duration_s)
    if fmt == "wav_pcm":
        return audio.wav_pcm_stream(duration_s)
    if fmt == "wav_gsm":
        return audio.wav_gsm_stream(duration_s)
    if fmt == "wav_empty":
        return audio.header_only_wav_stream()
    if fmt == "wav_lying":
        return audio.lying_wav_stream(duration_s)
    return audio.AudioStream(_junk_content(name), b"", 0)


def _junk_content(name: str) -> bytes:
    if name.endswith(".txt"):
        return b"Recordings are kept for 90 days.\nDo not put other files here.\n"
    return random.Random(f"junk:{name}").randbytes(2048)


@dataclass(frozen=True)
class _Call:
    """A call before its uniqueid sequence number is known (that needs all calls in time order)."""

    started_local: datetime
    folder: str
    caller: str
    callee: str
    duration_s: int
    fmt: AudioFormat
    extension: str
    system_name: str = ""


class Corpus:
    """The recordings on a simulated PBX: `per_day` calls a day for `days` days from `start`.

    Built once from `seed` (same arguments, same corpus). Calls fall in working hours of
    `timezone`, spread over 3-4 trunk folders. `odd_names` adds a fixed set of valid but unusual
    names on the first day; `junk` adds a few files that are not recordings. `add()` creates more
    at run time and is safe to call from another thread than the server's.
    """

    def __init__(
        self,
        *,
        seed: int,
        start: date,
        days: int,
        per_day: int,
        max_duration_s: int | None = None,
        timezone: str = DEFAULT_TIMEZONE,
        odd_names: bool = True,
        junk: bool = True,
    ) -> None:
        if days < 0 or per_day < 0:
            raise ValueError("days and per_day must be >= 0")
        if max_duration_s is not None and max_duration_s < 1:
            raise ValueError("max_duration_s must be >= 1")
        self.seed = seed
        self.start = start
        self.tz = ZoneInfo(timezone)
        self._per_day = per_day
        self._max_duration_s = max_duration_s
        self._lock = threading.Lock()
        self._by_relative: dict[str, SimRecording] = {}
        self._folders: set[str] = set()
        self._sorted: list[SimRecording] | None = None
        rng = random.Random(f"archiver-sim:{seed}:corpus")
        self._trunks = _trunk_folders(rng)
        self._folders.update(self._trunks)
        self._numbers = [_external_number(rng) for _ in range(30)]
        self._extensions = [100, *rng.sample(range(101, 200), 14)]
        calls = [
            c for day in range(days) for c in self._day_calls(rng, start + timedelta(days=day))
        ]
        if odd_names:
            calls += self._odd_calls()
        self._last_seq = rng.randint(1, 400)
        for call in sorted(calls, key=lambda c: c.started_local):
            self._store(self._finish(call, jitter_s=rng.randint(0, 3), step=rng.randint(1, 9)))
        if junk:
            for rec in self._junk():
                self._store(rec)

    # -- queries -----------------------------------------------------------------------------------

    def recordings(self) -> list[SimRecording]:
        """Every file (junk included), ordered by folder then name, as `ls` would list them."""
        with self._lock:
            if self._sorted is None:  # sorted once per change, not once per listing request
                self._sorted = sorted(self._by_relative.values(), key=lambda r: (r.folder, r.name))
            return list(self._sorted)

    def folders(self) -> list[str]:
        """The folder names under the recording directory, sorted."""
        with self._lock:
            return sorted(self._folders)

    def list_folder(self, folder: str) -> list[str]:
        """The file names in `folder`, sorted; empty for a folder that does not exist."""
        return [r.name for r in self.recordings() if r.folder == folder]

    def find(self, name_glob: str) -> list[str]:
        """What `find RECORDING_DIR/ -name NAME_GLOB` prints: the absolute paths that match.

        Like find, the match is case-sensitive `fnmatch` on the base name, and it also prints the
        starting directory and the folders whose names match (a trunk named after a number is hit
        by a search for that number).
        """
        paths = [f"{RECORDING_DIR}/"] if fnmatch.fnmatchcase("recording", name_glob) else []
        by_folder: dict[str, list[SimRecording]] = {f: [] for f in self.folders()}
        for rec in self.recordings():
            by_folder[rec.folder].append(rec)
        for folder, recs in by_folder.items():
            if fnmatch.fnmatchcase(folder, name_glob):
                paths.append(f"{RECORDING_DIR}/{folder}")
            paths += [r.path for r in recs if fnmatch.fnmatchcase(r.name, name_glob)]
        return paths

    def by_relative_path(self, relative_path: str) -> SimRecording | None:
        """Return the file at `recording/<folder>/<name>` exactly (no normalisation), or None."""
        with self._lock:
            return self._by_relative.get(relative_path)

    def audio_stream(self, rec: SimRecording) -> audio.AudioStream:
        """Return the bytes of `rec` as a stream (its `size_bytes` equals `rec.size_bytes`)."""
        return audio_stream_for(rec.fmt, rec.duration_s, rec.name)

    def audio_bytes(self, rec: SimRecording) -> bytes:
        """Return all the bytes of `rec` at once."""
        return self.audio_stream(rec).read_all()

    def manifest(self) -> list[dict[str, object]]:
        """Return every file as JSON-able dicts, in `recordings()` order."""
        return [r.manifest_entry() for r in self.recordings()]

    # -- changes -----------------------------------------------------------------------------------

    def add(
        self,
        *,
        caller: str,
        callee: str,
        duration_s: int,
        fmt: AudioFormat = "wav_pcm",
        started_local: datetime | None = None,
        folder: str | None = None,
        extension: str | None = None,
    ) -> SimRecording:
        """Create a valid recording and return it; it shows in listings from then on.

        `started_local` defaults to now (whole seconds) in the corpus time zone, and a naive value
        is taken as local time there; `folder` defaults to the first trunk (a new name creates the
        folder); `extension` defaults to the format's usual one. The uniqueid takes the next
        sequence number. `duration_s` is not capped by `max_duration_s`.
        """
        when = started_local or datetime.now(self.tz).replace(microsecond=0)
        if when.tzinfo is None:
            when = when.replace(tzinfo=self.tz)
        call = _Call(
            started_local=when.astimezone(self.tz),
            folder=folder or self._trunks[0],
            caller=caller,
            callee=callee,
            duration_s=duration_s,
            fmt=fmt,
            extension=extension or _DEFAULT_EXTENSION[fmt],
        )
        with self._lock:
            rec = self._finish(call, jitter_s=0, step=1)
            self._store(rec)
        return rec

    # -- building ----------------------------------------------------------------------------------

    def _store(self, rec: SimRecording) -> None:
        self._folders.add(rec.folder)
        self._by_relative[rec.relative_path] = rec
        self._sorted = None

    def _finish(self, call: _Call, *, jitter_s: int, step: int) -> SimRecording:
        """Give `call` the next uniqueid (EPOCH.SEQ, EPOCH the UTC start plus jitter) and a name."""
        self._last_seq += step
        epoch = int(call.started_local.timestamp()) + jitter_s
        prefix = f"{call.system_name}-" if call.system_name else ""
        uniqueid = f"{prefix}{epoch}.{self._last_seq}"
        name = format_name(
            call.started_local, call.caller, call.callee, uniqueid, call.duration_s, call.extension
        )
        size = audio_stream_for(call.fmt, call.duration_s, name).size_bytes
        return SimRecording(
            folder=call.folder,
            name=name,
            fmt=call.fmt,
            duration_s=call.duration_s,
            caller=call.caller,
            callee=call.callee,
            uniqueid=uniqueid,
            started_local=call.started_local,
            valid=True,
            size_bytes=size,
        )

    def _day_calls(self, rng: random.Random, day: date) -> Iterable[_Call]:
        seconds = sorted(
            rng.randrange(_WORKDAY_START_S, _WORKDAY_END_S) for _ in range(self._per_day)
        )
        for second in seconds:
            caller, callee = self._parties(rng)
            fmt, extension = _format(rng)
            yield _Call(
                started_local=self._local(day, second),
                folder=rng.choice(self._trunks),
                caller=caller,
                callee=callee,
                duration_s=self._cap(_duration_s(rng)),
                fmt=fmt,
                extension=extension,
            )

    def _parties(self, rng: random.Random) -> tuple[str, str]:
        """Return (caller, callee): inbound, outbound, or now and then extension to extension."""
        extension = str(rng.choice(self._extensions))
        external = rng.choice(self._numbers)
        u = rng.random()
        if u < 0.05:
            return extension, str(rng.choice(self._extensions))
        return (external, extension) if u < 0.5 else (extension, external)

    def _local(self, day: date, second_of_day: int) -> datetime:
        return datetime.combine(day, time(), self.tz) + timedelta(seconds=second_of_day)

    def _cap(self, duration_s: int) -> int:
        return min(duration_s, self._max_duration_s or duration_s)

    def _odd_calls(self) -> list[_Call]:
        """Valid names a parser must survive (pbx-api.md), all on the first day at fixed times."""
        first, trunk = self.start, self._trunks[0]

        def call(hms: str, caller: str, callee: str, fmt: AudioFormat, ext: str, dur: int) -> _Call:
            h, m, s = (int(hms[i : i + 2]) for i in (0, 2, 4))
            started = self._local(first, h * 3600 + m * 60 + s)
            return _Call(started, trunk, caller, callee, self._cap(dur), fmt, ext)

        long_number = "00" + _DOC_NUMBER + "123456789"  # 23 digits
        return [
            call("161938", "", _DOC_NUMBER, "gsm", "gsm", 4),
            call("091205", "anonymous", "100", "wav_pcm", "wav", 37),
            call("104751", "101", "unknown", "wav_pcm", "wav", 12),
            call("110517", "+" + _DOC_NUMBER, "100", "gsm", "gsm", 61),
            call("133102", "100", long_number, "wav_pcm", "wav", 25),
            _with_system_name(call("140244", "100", _DOC_NUMBER, "gsm", "gsm", 15), "pbx1"),
            call("152010", _DOC_NUMBER, "102", "wav_gsm", "WAV", 44),
            call("154833", "102", "905412535962", "wav_gsm", "wav49", 29),
            call("170500", _DOC_NUMBER, "100", "wav_gsm", "wav", 33),  # GSM inside a .wav
        ]

    def _junk(self) -> list[SimRecording]:
        """Files that are not recordings but sit in the tree (and match date searches)."""
        day, month = f"{self.start:%Y%m%d}", f"{self.start:%Y%m}"
        epoch = int(self._local(self.start, 10 * 3600).timestamp())
        trunks = self._trunks
        entries: list[tuple[str, str, AudioFormat, int]] = [
            (trunks[0], "README.txt", "other", 0),
            (trunks[1], "core.1234", "other", 0),
            (trunks[0], f"{month}32-101500-100-{_DOC_NUMBER}-{epoch}.1-12.gsm", "gsm", 12),
            (trunks[1], f"{day}-256199-{_DOC_NUMBER}-100-{epoch}.2-30.wav", "wav_pcm", 30),
            (trunks[2], f"{day}-113000-100-$(reboot)-{epoch}.3-5.gsm", "gsm", 5),
        ]
        return [
            SimRecording(
                folder=folder,
                name=name,
                fmt=fmt,
                duration_s=dur,
                caller="",
                callee="",
                uniqueid="",
                started_local=None,
                valid=False,
                size_bytes=audio_stream_for(fmt, dur, name).size_bytes,
            )
            for folder, name, fmt, dur in entries
        ]


def _with_system_name(call: _Call, system_name: str) -> _Call:
    return _Call(
        call.started_local,
        call.folder,
        call.caller,
        call.callee,
        call.duration_s,
        call.fmt,
        call.extension,
        system_name,
    )


def _trunk_folders(rng: random.Random) -> list[str]:
    """Three or four SIP trunks named after their DID numbers, e.g. `trunk-sip-908502591905`."""
    count = rng.randint(3, 4)
    return [f"trunk-sip-{_external_number(rng, _TRUNK_AREAS)}" for _ in range(count)]


_TRUNK_AREAS = ("212", "216", "312", "850")
_CALLER_AREAS = ("212", "216", "312", "232", "850", "532", "542", "505", "555")


def _external_number(rng: random.Random, areas: tuple[str, ...] = _CALLER_AREAS) -> str:
    """A Turkish number as the PBX writes it: 90, a 3-digit area or mobile code, 7 digits."""
    return f"90{rng.choice(areas)}{rng.randrange(10**7):07d}"


def _format(rng: random.Random) -> tuple[AudioFormat, str]:
    """About 30% raw GSM, 60% PCM WAV, 10% GSM-in-WAV (as .WAV, .wav49 or a plain .wav)."""
    u = rng.random()
    if u < 0.3:
        return "gsm", "gsm"
    if u < 0.9:
        return "wav_pcm", "wav"
    return "wav_gsm", rng.choice(["WAV", "WAV", "wav49", "wav"])


def _duration_s(rng: random.Random) -> int:
    """Mostly 20 s to 5 min; some short, some 5-10 min, a few over 10 min."""
    u = rng.random()
    if u < 0.04:
        return rng.randint(601, 900)
    if u < 0.12:
        return rng.randint(301, 600)
    if u < 0.20:
        return rng.randint(3, 19)
    return max(20, min(300, round(rng.lognormvariate(math.log(75), 0.6))))
