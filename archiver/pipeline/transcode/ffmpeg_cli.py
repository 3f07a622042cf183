"""One ffmpeg command line: its input and output arguments, its tags, running it within a time
limit, and the one error every transcoding failure is (`TranscodeError`)."""

from __future__ import annotations

import subprocess
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Final

from archiver.pipeline.transcode.probe import Probe

__all__ = [
    "QUIET_NO_STDIN",
    "TranscodeError",
    "input_args",
    "killed_error",
    "lame_quality_args",
    "last_line",
    "metadata_args",
    "output_args",
    "run_ffmpeg",
]

_REASON_MAX_CHARS: Final = 200


class TranscodeError(Exception):
    """ffmpeg failed, or its output did not check out. `reason` is one short line."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def metadata_args(tags: Mapping[str, str]) -> list[str]:
    """Turn tags into ffmpeg ``-metadata key=value`` arguments; reject names ffmpeg would split."""
    args: list[str] = []
    for key, value in tags.items():
        if not key or "=" in key:
            raise ValueError(f"ID3 tag name {key!r} must be non-empty and contain no '='")
        args += ["-metadata", f"{key}={value}"]
    return args


# Global options; ffmpeg honours them anywhere on the command line, even after the output name,
# which is where pydub's decode step appends `parameters`.
QUIET_NO_STDIN = ["-nostdin", "-hide_banner", "-loglevel", "error"]


def input_args(probe: Probe, src: Path) -> list[str]:
    """One input, demuxer and decoder named (no probing by ffmpeg either)."""
    return ["-f", probe.demuxer, "-c:a", probe.decoder, "-i", str(src.absolute())]


def output_args(
    tmp: Path,
    bitrate: str,
    metadata: Sequence[str],
    *,
    stream: int = 0,
    quality: Sequence[str] = (),
) -> list[str]:
    """One MP3 output of input number `stream`, the same encoder settings as pydub's export;
    `quality` is `lame_quality_args`' answer."""
    return [
        "-map", f"{stream}:a",
        "-map_metadata", "-1",  # carry no WAV INFO tags over: the caller's tags are the tags
        "-vn", "-c:a", "libmp3lame", "-b:a", bitrate, *quality,
        "-id3v2_version", "3", *metadata,
        "-f", "mp3", "-y", str(tmp),
    ]  # fmt: skip


def lame_quality_args(lame_quality: int | None) -> list[str]:
    """LAME's algorithm quality (`lame -q N`: 0 slowest .. 9 fastest; the bitrate stays) as
    ffmpeg's libmp3lame takes it; None leaves LAME's own default (3)."""
    if lame_quality is None:
        return []
    if not 0 <= lame_quality <= 9:
        raise ValueError(f"LAME quality must be 0..9, got {lame_quality!r}")
    return ["-compression_level", str(lame_quality)]


def run_ffmpeg(command: Sequence[str], *, timeout_s: float) -> None:
    try:
        done = subprocess.run(
            command,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            timeout=timeout_s,
            check=False,
        )
    except subprocess.TimeoutExpired:
        raise killed_error(timeout_s) from None
    except OSError as exc:
        raise TranscodeError(f"cannot run ffmpeg: {exc.strerror}") from None
    if done.returncode != 0:
        stderr = done.stderr.decode("utf-8", "replace")
        raise TranscodeError(f"ffmpeg exited with {done.returncode}: {last_line(stderr)}")


def killed_error(timeout_s: float) -> TranscodeError:
    return TranscodeError(f"ffmpeg ran longer than {timeout_s:g} s and was killed")


def last_line(text: str) -> str:
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    last = lines[-1] if lines else "no error message"
    return last[:_REASON_MAX_CHARS]
