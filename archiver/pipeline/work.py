"""One recording's work files and tags: the token naming its files, what they should hold, the
MP3's ID3 tags and how long transcoding may take."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

from archiver.names import Recording

__all__ = ["Progress", "id3_tags", "missing_work_file", "transcode_limit_s", "work_token"]

_TRANSCODE_BASE_S = 120.0
_TRANSCODE_S_PER_AUDIO_S = 2.0


def id3_tags(rec: Recording) -> dict[str, str]:
    """The MP3's tags: who called whom, when, how long."""
    return {
        "title": f"{rec.caller or '?'} -> {rec.callee or '?'}",
        "artist": rec.caller,
        "album": f"{rec.pbx} {rec.folder}",
        # ID3v2.3's date frame keeps only the year; the full local time goes in its own tag.
        "date": rec.started_at.date().isoformat(),
        "recorded_at": rec.started_at.isoformat(),
        "caller": rec.caller,
        "callee": rec.callee,
        "duration": str(rec.duration_s),
        "uniqueid": rec.uniqueid,
    }


def transcode_limit_s(rec: Recording) -> float:
    """How long transcoding `rec` may take before ffmpeg is killed and the recording fails:
    ffmpeg encodes a call 100-300 times faster than it plays here, so two seconds per second of
    audio (the download cap allows a little more audio than the name says) and two minutes of
    start-up leave room for a machine under load while a stuck ffmpeg is still stopped."""
    return _TRANSCODE_BASE_S + _TRANSCODE_S_PER_AUDIO_S * rec.duration_s


def work_token(rec: Recording) -> str:
    return hashlib.sha256(rec.key.encode()).hexdigest()[:24]


@dataclass
class Progress:
    """How far one recording got, to tell a vanished work file from a real failure."""

    downloaded: bool = False
    transcoded: bool = False

    def vanished(self, source: Path, mp3: Path) -> bool:
        """True if a work file that should still exist is gone."""
        return (self.downloaded and not source.exists()) or (self.transcoded and not mp3.exists())


def missing_work_file(error: BaseException, work_dir: Path) -> bool:
    """True if `error`, or one it was raised from, is a missing file inside `work_dir`."""
    seen: BaseException | None = error
    while seen is not None:
        if isinstance(seen, FileNotFoundError) and Path(str(seen.filename)).parent == work_dir:
            return True
        seen = seen.__cause__ or seen.__context__
    return False
