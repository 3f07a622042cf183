"""Probe a source file: what it holds (raw GSM, GSM-in-WAV or PCM WAV) and how long it plays.

Pure Python, no ffprobe: the file's first bytes decide, by content and not by extension. An
unusable file raises `BadAudio`, which is permanent: retrying cannot help. `probe` also names
the demuxer and decoder ffmpeg must use, so neither ffmpeg nor pydub ever guesses.
"""

from __future__ import annotations

import enum
import os
import struct
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

__all__ = [
    "BadAudio",
    "Probe",
    "Repair",
    "SourceFormat",
    "SourceInfo",
    "probe_file",
    "probe_source",
]


class SourceFormat(enum.Enum):
    """What a source file holds, as detected from its content."""

    GSM_RAW = "gsm"
    WAV_PCM = "wav_pcm"
    WAV_GSM = "wav_gsm"


class BadAudio(Exception):
    """The source file itself is unusable; transcoding it again will not help.

    `reason` is short and safe to log. `empty` is True when the file holds no audio at all
    (zero length, a header only, less than one frame), as opposed to holding garbage.
    `cut_short` is True when the file's own header says more audio should follow than did.
    """

    def __init__(self, reason: str, *, empty: bool = False, cut_short: bool = False) -> None:
        super().__init__(reason)
        self.reason = reason
        self.empty = empty
        self.cut_short = cut_short


@dataclass(frozen=True)
class SourceInfo:
    """A probed source: its format, its playing time and the size of its audio payload."""

    format: SourceFormat
    duration_s: float
    audio_bytes: int


# Raw GSM 06.10: 33-byte frames of 160 samples (20 ms at 8 kHz); each frame's first nibble is 0xD.
_GSM_FRAME_BYTES = 33
_GSM_FRAME_SAMPLES = 160
_GSM_RATE_HZ = 8000
_GSM_MAGIC = 0xD
_GSM_FRAMES_CHECKED = 32  # enough that random bytes pass with odds of 16**-32
# GSM-in-WAV (Microsoft GSM 6.10, format tag 49): two frames packed into 65-byte, 320-sample blocks.
_WAVE_FORMAT_PCM = 1
_WAVE_FORMAT_GSM610 = 49
_MS_GSM_BLOCK_BYTES = 65
_MS_GSM_BLOCK_SAMPLES = 320
_PCM_BITS = (8, 16, 24, 32)
_RATE_RANGE_HZ = range(1000, 384_001)
_CHANNEL_RANGE = range(1, 9)
_MAX_WAV_CHUNKS = 64  # real files have a handful; a long walk means garbage
_MAX_FMT_BYTES = 64  # we use the first 16 (PCM) or 20 (GSM) bytes of the fmt chunk
_UNKNOWN_SIZE = 0xFFFFFFFF


@dataclass(frozen=True)
class Repair:
    """How to make a decodable copy of a source the PBX never finished: write `head` (the WAV
    header with its sizes fixed; empty for raw GSM), then `length` bytes from `start`."""

    head: bytes
    start: int
    length: int


@dataclass(frozen=True)
class Probe:
    """What the encoder needs beyond `SourceInfo`: ffmpeg's demuxer and decoder names, and a
    `repair` when the file must be fixed up before a decoder can take it."""

    info: SourceInfo
    demuxer: str
    decoder: str
    repair: Repair | None = None


@dataclass(frozen=True)
class _WavFmt:
    tag: int
    channels: int
    rate_hz: int
    block_align: int
    bits: int


def probe_source(path: Path) -> SourceInfo:
    """Given a source file, return its format, duration and audio size, judged by content.

    RIFF/WAVE files are parsed chunk by chunk (format tag 1 = PCM, 49 = GSM 6.10); anything else
    must look like raw GSM (33-byte frames, a sample of which start with 0xD; a partial last
    frame is left out). WAV sizes of 0 or 0xFFFFFFFF (never fixed up) mean "to the end of the
    file"; such files, and raw GSM with a partial last frame, get a `Probe.repair`.
    Raise `BadAudio` (``empty=True`` for zero-length, header-only or sub-frame files) when the file
    is not usable: an unknown format, a header that lies, or random bytes. Reads only headers
    and a few bytes per sampled frame; raise OSError if the file cannot be read.
    """
    return probe_file(path).info


def probe_file(path: Path) -> Probe:
    """`probe_source`, with the demuxer and decoder ffmpeg needs for the file."""
    with path.open("rb") as f:
        size = os.fstat(f.fileno()).st_size
        if size == 0:
            raise BadAudio("the file is empty", empty=True)
        head = f.read(12)
        if head.startswith(b"RIFF"):
            return _probe_wav(f, size, head)
        return _probe_raw_gsm(f, size)


def _probe_raw_gsm(f: BinaryIO, size: int) -> Probe:
    if size < _GSM_FRAME_BYTES:
        raise BadAudio(f"not WAV, and {size} B is less than one GSM frame", empty=True)
    frames = size // _GSM_FRAME_BYTES
    for index in _frames_to_check(frames):
        f.seek(index * _GSM_FRAME_BYTES)
        if f.read(1)[0] >> 4 != _GSM_MAGIC:
            raise BadAudio(f"not WAV, and GSM frame {index} does not start with 0xD")
    whole_bytes = frames * _GSM_FRAME_BYTES
    # A PBX cut off mid-write leaves a partial last frame: the whole frames are the recording.
    repair = Repair(b"", 0, whole_bytes) if whole_bytes != size else None
    duration_s = frames * _GSM_FRAME_SAMPLES / _GSM_RATE_HZ
    info = SourceInfo(SourceFormat.GSM_RAW, duration_s, whole_bytes)
    return Probe(info, "gsm", "gsm", repair)


def _frames_to_check(frames: int) -> list[int]:
    """The first and last few frame indexes, and some spread evenly between them."""
    edge = _GSM_FRAMES_CHECKED // 4
    spread = _GSM_FRAMES_CHECKED - 2 * edge
    picked = {*range(min(frames, edge)), *range(max(0, frames - edge), frames)}
    picked.update(i * frames // spread for i in range(spread))
    return sorted(picked)


def _probe_wav(f: BinaryIO, size: int, head: bytes) -> Probe:
    if len(head) < 12:
        raise BadAudio("the RIFF header is cut short", empty=True)
    if head[8:12] != b"WAVE":
        raise BadAudio("a RIFF file that is not WAVE")
    fmt: _WavFmt | None = None
    for chunk_id, chunk_size, offset in _wav_chunks(f, size):
        if chunk_id == b"data":
            if fmt is None:
                raise BadAudio("the WAV data chunk comes before any fmt chunk")
            probe = _wav_probe(fmt, chunk_size, available=size - offset)
            if probe.info.audio_bytes == chunk_size:
                return probe
            f.seek(0)
            return _with_fixed_header(probe, f.read(offset - 8), offset)
        if offset + chunk_size > size:
            raise BadAudio(f"the WAV {_chunk_name(chunk_id)} chunk runs past the end of the file")
        if chunk_id == b"fmt ":
            fmt = _parse_fmt(f.read(min(chunk_size, _MAX_FMT_BYTES)))
    raise BadAudio("the WAV has a header but no data chunk", empty=True)


def _wav_chunks(f: BinaryIO, size: int) -> Iterator[tuple[bytes, int, int]]:
    """Yield (id, declared size, body offset) per chunk, leaving `f` at the body's start."""
    position = 12
    for _ in range(_MAX_WAV_CHUNKS):
        f.seek(position)
        header = f.read(8)
        if len(header) < 8:
            return
        chunk_id, chunk_size = struct.unpack("<4sI", header)
        yield chunk_id, chunk_size, position + 8
        position += 8 + chunk_size + (chunk_size & 1)  # chunks are padded to even sizes
        if position >= size:
            return
    raise BadAudio(f"the WAV has more than {_MAX_WAV_CHUNKS} chunks")


def _chunk_name(chunk_id: bytes) -> str:
    return repr(chunk_id.decode("ascii", "replace"))


def _parse_fmt(body: bytes) -> _WavFmt:
    if len(body) < 16:
        raise BadAudio("the WAV fmt chunk is too short")
    tag, channels, rate_hz, _byte_rate, block_align, bits = struct.unpack_from("<HHIIHH", body)
    return _WavFmt(tag, channels, rate_hz, block_align, bits)


def _with_fixed_header(probe: Probe, before_data: bytes, offset: int) -> Probe:
    """`probe` with a repair that gives the data chunk (and the RIFF header) their true sizes."""
    data_bytes = probe.info.audio_bytes
    riff_bytes = len(before_data) + data_bytes  # everything after RIFF's own 8 bytes
    head = b"RIFF" + struct.pack("<I", riff_bytes) + before_data[8:]
    head += b"data" + struct.pack("<I", data_bytes)
    return Probe(probe.info, probe.demuxer, probe.decoder, Repair(head, offset, data_bytes))


def _data_bytes(declared: int, available: int, block_align: int) -> int:
    """The data chunk's true size. Asterisk writes the sizes when it closes the file: a PBX cut
    off before that leaves 0 (or 0xFFFFFFFF, as streaming writers do), and then the data runs to
    the end of the file. A declared size short of the end by less than one block is a last
    sample cut in half. Raise BadAudio if more is missing: the file was cut short."""
    if declared in (0, _UNKNOWN_SIZE):
        return available - available % block_align
    if declared > available:
        if declared - available >= block_align:
            raise BadAudio(
                f"the WAV data chunk claims {declared} B but only {available} B follow",
                cut_short=True,
            )
        return available - available % block_align
    return declared


def _wav_probe(fmt: _WavFmt, declared_bytes: int, *, available: int) -> Probe:
    """Check the fmt chunk against the data chunk and work out the duration."""
    if fmt.tag == _WAVE_FORMAT_PCM:
        sample_format, unit_samples = _check_pcm(fmt)
        decoder = f"pcm_{sample_format}"
        source_format = SourceFormat.WAV_PCM
    elif fmt.tag == _WAVE_FORMAT_GSM610:
        _check_ms_gsm(fmt)
        unit_samples = _MS_GSM_BLOCK_SAMPLES
        decoder = "gsm_ms"
        source_format = SourceFormat.WAV_GSM
    else:
        raise BadAudio(f"WAV format tag {fmt.tag} is neither 1 (PCM) nor 49 (GSM 6.10)")
    if available < fmt.block_align or 0 < declared_bytes < fmt.block_align:
        raise BadAudio("the WAV data chunk holds no complete audio frame", empty=True)
    data_bytes = _data_bytes(declared_bytes, available, fmt.block_align)
    duration_s = data_bytes // fmt.block_align * unit_samples / fmt.rate_hz
    return Probe(SourceInfo(source_format, duration_s, data_bytes), "wav", decoder)


def _check_pcm(fmt: _WavFmt) -> tuple[str, int]:
    """Return ffmpeg's sample-format suffix and samples per block, or raise BadAudio."""
    _check_rate_and_channels(fmt)
    if fmt.bits not in _PCM_BITS or fmt.block_align != fmt.channels * fmt.bits // 8:
        raise BadAudio(
            f"WAV PCM with {fmt.bits} bits in {fmt.block_align}-byte blocks"
            f" of {fmt.channels} channel(s) makes no sense"
        )
    return ("u8" if fmt.bits == 8 else f"s{fmt.bits}le"), 1


def _check_ms_gsm(fmt: _WavFmt) -> None:
    _check_rate_and_channels(fmt)
    if fmt.channels != 1 or fmt.block_align != _MS_GSM_BLOCK_BYTES:
        raise BadAudio(
            f"WAV GSM 6.10 must be mono in 65-byte blocks, not {fmt.channels} channel(s)"
            f" in {fmt.block_align}-byte blocks"
        )


def _check_rate_and_channels(fmt: _WavFmt) -> None:
    if fmt.rate_hz not in _RATE_RANGE_HZ or fmt.channels not in _CHANNEL_RANGE:
        raise BadAudio(f"WAV header says {fmt.rate_hz} Hz and {fmt.channels} channel(s)")
