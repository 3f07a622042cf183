"""Encode one probed source to a verified MP3, and the ffmpeg pieces a batch reuses.

`transcode_to_mp3` encodes to a temporary name next to the destination, checks the MP3's duration
against the source's, hashes it, and only then renames it into place, so the destination either
holds a checked MP3 or does not exist.

Two engines produce the same MP3:

- ``"pydub"`` (default): `AudioSegment.from_file(...).export(...)`. It runs two ffmpeg processes
  and writes temporary files (a WAV among them). pydub offers no timeout, and when ffmpeg fails
  it leaves those files behind: they go to a directory of our own beside the destination, which
  is removed whole however pydub ends (see `_pydub_scratch_dir`).
- ``"ffmpeg"``: one ffmpeg process and no temporary WAV; with a timeout. It used 23-38 % less
  CPU than pydub on 60 s and 600 s of GSM here (bench/profile_transcode.py).

Every ffmpeg process gets ``-nostdin``: a static ffmpeg left to poll a closed stdin spun at 100 %
CPU for ten minutes (see shared/transcoding.md). The decoder is always named explicitly, so pydub
never runs ffprobe (which the static imageio-ffmpeg build lacks).
"""

from __future__ import annotations

import base64
import contextlib
import functools
import hashlib
import os
import shutil
import tempfile
import threading
import warnings
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from mutagen import MutagenError
from mutagen.mp3 import MP3

from archiver.pipeline.transcode.ffmpeg_cli import (
    QUIET_NO_STDIN,
    TranscodeError,
    input_args,
    killed_error,
    lame_quality_args,
    last_line,
    metadata_args,
    output_args,
    run_ffmpeg,
)
from archiver.pipeline.transcode.probe import Probe, SourceInfo, probe_file

with warnings.catch_warnings():
    # pydub warns at import when no ffmpeg is on PATH (we always name the binary), and Python 3.11
    # warns that pydub's `audioop` is deprecated (the package depends on audioop-lts for 3.13+).
    warnings.simplefilter("ignore")
    import pydub.audio_segment
    from pydub import AudioSegment
    from pydub.exceptions import CouldntDecodeError, CouldntEncodeError

from archiver.pipeline.time_limit import install, killed_after

install(pydub.audio_segment)

__all__ = [
    "QUIET_NO_STDIN",
    "Engine",
    "FfmpegNotFound",
    "TranscodeError",
    "TranscodeResult",
    "find_ffmpeg",
    "finish_mp3",
    "input_args",
    "lame_quality_args",
    "metadata_args",
    "output_args",
    "run_ffmpeg",
    "temp_path_next_to",
    "transcode_to_mp3",
]

Engine = Literal["pydub", "ffmpeg"]


class FfmpegNotFound(Exception):
    """No usable ffmpeg binary; the message says how to install one."""


@dataclass(frozen=True)
class TranscodeResult:
    """A checked MP3 in place at `mp3_path`; `md5_b64` is the base64 MD5, as rclone stores it."""

    mp3_path: Path
    mp3_bytes: int
    mp3_duration_s: float
    source: SourceInfo
    md5_b64: str
    md5_hex: str


# Duration agreement between source and MP3: MP3 frames (and encoder padding) round the length.
_DURATION_TOLERANCE_S = 0.3
_DURATION_TOLERANCE_RATIO = 0.02


def find_ffmpeg(configured: str | None) -> str:
    """Return the absolute path of the ffmpeg binary to use.

    Order: `configured` (a path, or a name looked up on PATH; it must exist and be executable,
    else FfmpegNotFound, with no fallback, so a typo is not silently ignored), then ``ffmpeg`` on
    PATH, then imageio-ffmpeg's static binary if that package is installed. Raise FfmpegNotFound
    with install instructions when none is found.
    """
    if configured is not None:
        found = shutil.which(configured)
        if found is None:
            raise FfmpegNotFound(
                f"transcode.ffmpeg = {configured!r} is not an executable file; fix the setting, "
                "or remove it to use the ffmpeg on PATH"
            )
        return str(Path(found).absolute())
    found = shutil.which("ffmpeg")
    if found is not None:
        return str(Path(found).absolute())
    try:
        import imageio_ffmpeg  # an optional extra: imported only when it is the last resort

        return str(imageio_ffmpeg.get_ffmpeg_exe())
    except (ImportError, RuntimeError):
        pass
    raise FfmpegNotFound(
        "ffmpeg not found: install it with `apt-get install ffmpeg`, or install a static build "
        "with `pip install 'archiver[ffmpeg]'`, or set transcode.ffmpeg to its path"
    )


def transcode_to_mp3(
    src: Path,
    dst: Path,
    *,
    ffmpeg: str,
    bitrate: str = "32k",
    tags: Mapping[str, str],
    engine: Engine = "pydub",
    timeout_s: float = 300.0,
    lame_quality: int | None = None,
) -> TranscodeResult:
    """Transcode `src` to an MP3 at `dst` with ID3v2.3 `tags`, check it, and describe it.

    Synchronous and blocking: run it in a thread or process pool. `ffmpeg` is a path from
    `find_ffmpeg`. The MP3 is written to a temporary name in `dst`'s folder and renamed onto `dst`
    only once its duration matches the source's within max(0.3 s, 2 %); on any failure the
    temporary file is removed and `dst` is left untouched. `timeout_s` bounds either engine:
    ffmpeg still running then is killed and TranscodeError says so. `lame_quality` is LAME's
    algorithm quality 0-9 (`transcode.lame_quality`; None: LAME's default, 3), given to either
    engine the same way, so both still write the same MP3.

    Raise BadAudio if the source is unusable, TranscodeError if ffmpeg fails or the MP3 does not
    check out, ValueError for a tag name ffmpeg cannot take, OSError for file-system errors.
    """
    probe = probe_file(src)
    metadata = metadata_args(tags)  # checked before any file is created
    quality = lame_quality_args(lame_quality)
    with _decodable(probe, src, dst) as readable:
        return _transcode(
            probe, readable, dst, ffmpeg=ffmpeg, bitrate=bitrate, tags=tags, engine=engine,
            metadata=metadata, timeout_s=timeout_s, quality=quality,
        )  # fmt: skip


@contextlib.contextmanager
def _decodable(probe: Probe, src: Path, dst: Path) -> Iterator[Path]:
    """`src`, or when the probe found a file the PBX never finished, a repaired copy of it
    beside `dst` (removed afterwards): decoders trust a WAV's sizes and choke on partial frames."""
    if probe.repair is None:
        yield src
        return
    fixed = temp_path_next_to(dst)
    try:
        with src.open("rb") as source, fixed.open("wb") as out:
            out.write(probe.repair.head)
            source.seek(probe.repair.start)
            remaining = probe.repair.length
            while remaining > 0:
                block = source.read(min(remaining, 1 << 20))
                if not block:
                    break
                out.write(block)
                remaining -= len(block)
        yield fixed
    finally:
        fixed.unlink(missing_ok=True)


def _transcode(
    probe: Probe,
    src: Path,
    dst: Path,
    *,
    ffmpeg: str,
    bitrate: str,
    tags: Mapping[str, str],
    engine: Engine,
    metadata: list[str],
    timeout_s: float,
    quality: Sequence[str],
) -> TranscodeResult:
    tmp = temp_path_next_to(dst)
    try:
        if engine == "pydub":
            with killed_after(timeout_s) as watch:
                try:
                    _encode_with_pydub(
                        probe, src, tmp, ffmpeg=ffmpeg, bitrate=bitrate, tags=tags,
                        quality=quality,
                    )  # fmt: skip
                except TranscodeError:
                    if watch.expired:
                        raise killed_error(timeout_s) from None
                    raise
        elif engine == "ffmpeg":
            command = [
                ffmpeg, *QUIET_NO_STDIN, *input_args(probe, src),
                *output_args(tmp, bitrate, metadata, quality=quality),
            ]  # fmt: skip
            run_ffmpeg(command, timeout_s=timeout_s)
        else:
            raise ValueError(f"unknown transcode engine {engine!r}")
        return finish_mp3(tmp, dst, probe.info)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def finish_mp3(tmp: Path, dst: Path, source: SourceInfo) -> TranscodeResult:
    """Check the MP3 ffmpeg wrote to `tmp` against `source`, hash it, rename it onto `dst`.

    Raise TranscodeError if it does not check out (`tmp` is left for the caller to remove).
    """
    mp3_duration_s = _check_duration(tmp, expected_s=source.duration_s)
    with tmp.open("rb") as f:
        digest = hashlib.file_digest(f, lambda: hashlib.md5(usedforsecurity=False)).digest()
    mp3_bytes = tmp.stat().st_size
    tmp.replace(dst)
    return TranscodeResult(
        mp3_path=dst,
        mp3_bytes=mp3_bytes,
        mp3_duration_s=mp3_duration_s,
        source=source,
        md5_b64=base64.b64encode(digest).decode("ascii"),
        md5_hex=digest.hex(),
    )


def temp_path_next_to(dst: Path) -> Path:
    """Create an empty, uniquely named file beside `dst` (same file system: rename is atomic).

    The path is absolute: ffmpeg reads a relative name with a colon in it as a protocol URL.
    """
    fd, name = tempfile.mkstemp(dir=dst.parent.absolute(), prefix=f".{dst.name}.", suffix=".part")
    os.close(fd)
    return Path(name)


@functools.cache
def _segment_class(ffmpeg: str) -> Any:
    """An AudioSegment subclass bound to one ffmpeg binary.

    pydub reads the binary from the class attribute `converter` (``cls.converter`` to decode,
    ``self.converter`` to encode). Setting it on a subclass instead of on AudioSegment itself
    leaves pydub's global alone, so threads using different binaries cannot race.
    """
    return type("AudioSegmentWithFfmpeg", (AudioSegment,), {"converter": ffmpeg})


def _encode_with_pydub(
    probe: Probe,
    src: Path,
    tmp: Path,
    *,
    ffmpeg: str,
    bitrate: str,
    tags: Mapping[str, str],
    quality: Sequence[str],
) -> None:
    """Decode with pydub (ffmpeg, or pydub's own parser for PCM WAV) and export an MP3 to `tmp`.

    The decoder is always given: without `codec`, pydub asks ffprobe what the file holds, and it
    also falls back to that path when its own WAV parser rejects a PCM file.
    """
    segment_class = _segment_class(ffmpeg)
    try:
        with _pydub_scratch_dir(tmp.parent):
            segment = segment_class.from_file(
                str(src.absolute()),
                format=probe.demuxer,
                codec=probe.decoder,
                parameters=QUIET_NO_STDIN,  # pydub leaves stdin inherited when decoding a file
            )
            with tmp.open("w+b") as out:  # pydub does not close a file it opened itself
                segment.export(
                    out,
                    format="mp3",
                    bitrate=bitrate,
                    tags=dict(tags),
                    id3v2_version="3",
                    # Output options: pydub puts them after its `-b:a`, where output_args
                    # puts the same `-compression_level`.
                    parameters=[*QUIET_NO_STDIN, *quality],
                )
    except (CouldntEncodeError, CouldntDecodeError) as exc:
        raise TranscodeError(f"ffmpeg failed: {_pydub_reason(str(exc))}") from None
    except OSError as exc:
        if exc.filename != ffmpeg:  # a file-system error, not a missing or unrunnable binary
            raise
        raise TranscodeError(f"cannot run ffmpeg: {exc.strerror}") from None


# pydub 0.25.1 makes its temporaries with `NamedTemporaryFile(delete=False)` in the system temp
# directory and leaves them there when ffmpeg fails. Its module-level name is pointed at a
# function that puts them in the calling thread's scratch directory (each transcode runs in one
# worker thread), and that directory is removed whole afterwards.
_scratch = threading.local()


def _named_temporary_file(*args: Any, **kwargs: Any) -> Any:
    kwargs.setdefault("dir", getattr(_scratch, "path", None))
    return tempfile.NamedTemporaryFile(*args, **kwargs)


pydub.audio_segment.NamedTemporaryFile = _named_temporary_file


@contextlib.contextmanager
def _pydub_scratch_dir(parent: Path) -> Iterator[None]:
    """Let pydub's temporaries of this thread go to a new directory in `parent`; remove it and
    whatever is in it on the way out."""
    with tempfile.TemporaryDirectory(dir=parent.absolute(), prefix=".pydub-") as path:
        _scratch.path = path
        try:
            yield
        finally:
            _scratch.path = None


def _pydub_reason(message: str) -> str:
    """ffmpeg's last stderr line from a pydub error message, else the message's first line."""
    summary, _, stderr = message.partition("Output from ffmpeg/avlib:")
    if stderr.strip():
        return last_line(stderr)
    return last_line(summary.strip().splitlines()[0] if summary.strip() else "")


def _check_duration(mp3: Path, *, expected_s: float) -> float:
    """Return the MP3's playing time; raise TranscodeError if unreadable or off from expected."""
    try:
        # mutagen's constructors are unannotated and `info` is declared as None on the base class.
        info: Any = MP3(mp3).info
        duration_s = float(info.length)
    except MutagenError as exc:
        raise TranscodeError(f"the output is not a readable MP3: {last_line(str(exc))}") from None
    tolerance_s = max(_DURATION_TOLERANCE_S, _DURATION_TOLERANCE_RATIO * expected_s)
    if abs(duration_s - expected_s) > tolerance_s:
        raise TranscodeError(
            f"the MP3 plays {duration_s:.2f} s but the source {expected_s:.2f} s"
            f" (tolerance {tolerance_s:.2f} s)"
        )
    return duration_s
