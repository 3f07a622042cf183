"""The ffmpeg check: the binary is found, decodes raw GSM and WAV49 and encodes MP3, on two
one-second clips made here (GSM decoders accept any bits after a frame's 0xD nibble, so the
clips need no encoder) and transcoded by the daemon's own code in a temporary folder."""

from __future__ import annotations

import struct
import tempfile
from pathlib import Path
from typing import Final

from archiver.config import TranscodeConfig
from archiver.doctor.result import Check, failed, passed
from archiver.pipeline import (
    BadAudio,
    Engine,
    FfmpegNotFound,
    TranscodeError,
    find_ffmpeg,
    transcode_to_mp3,
)

__all__ = ["check_ffmpeg", "gsm_clip", "wav49_clip"]

_NAME: Final = "ffmpeg"
_SECONDS: Final = 1
_FIX_INSTALL: Final = "apt-get install ffmpeg (Debian's build decodes GSM and encodes MP3)"


def gsm_clip(seconds: int = _SECONDS) -> bytes:
    """Raw GSM 06.10: 50 frames of 33 bytes a second, each starting with the 0xD nibble."""
    frame = bytes([0xD8]) + bytes(range(1, 33))
    return frame * (50 * seconds)


def wav49_clip(seconds: int = _SECONDS) -> bytes:
    """Microsoft GSM 6.10 in WAV (tag 49): 25 blocks of 65 bytes a second, with a fact chunk."""
    blocks = 25 * seconds
    data = (bytes(range(1, 66))) * blocks
    fmt = struct.pack("<HHIIHHHH", 49, 1, 8000, 1625, 65, 0, 2, 320)
    fact = struct.pack("<I", blocks * 320)
    body = b"WAVE" + _chunk(b"fmt ", fmt) + _chunk(b"fact", fact) + _chunk(b"data", data)
    return b"RIFF" + struct.pack("<I", len(body)) + body


def _chunk(name: bytes, body: bytes) -> bytes:
    return name + struct.pack("<I", len(body)) + body + b"\0" * (len(body) & 1)


def check_ffmpeg(settings: TranscodeConfig) -> Check:
    """✓ when ffmpeg turns both clips into MP3s of the right length with the configured engine."""
    try:
        ffmpeg = find_ffmpeg(settings.ffmpeg)
    except FfmpegNotFound as error:
        return failed(_NAME, str(error).split(":")[0], _FIX_INSTALL)
    # "auto" uses both: pydub for a recording alone, ffmpeg for those that queue up.
    engines: tuple[Engine, ...] = (
        ("pydub", "ffmpeg") if settings.engine == "auto" else (settings.engine,)
    )
    with tempfile.TemporaryDirectory(prefix="archiver-doctor-") as folder:
        for label, clip, engine in (
            (label, clip, engine)
            for label, clip in (("raw GSM", gsm_clip()), ("WAV49", wav49_clip()))
            for engine in engines
        ):
            source = Path(folder) / "clip.src"
            source.write_bytes(clip)
            try:
                transcode_to_mp3(
                    source,
                    Path(folder) / "clip.mp3",
                    ffmpeg=ffmpeg,
                    bitrate=settings.bitrate,
                    tags={"title": "archiver doctor"},
                    engine=engine,
                    timeout_s=60,
                    lame_quality=settings.lame_quality,
                )
            except (BadAudio, TranscodeError, OSError) as error:
                reason = getattr(error, "reason", None) or str(error)
                return failed(
                    _NAME,
                    f"{ffmpeg} could not turn {label} into MP3 ({engine}): {reason}",
                    _FIX_INSTALL,
                )
    shown = " and ".join(engines)
    return passed(_NAME, f"{ffmpeg} decodes raw GSM and WAV49 and encodes MP3 ({shown})")
