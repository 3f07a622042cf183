"""Deterministic audio files in the formats an Asterisk PBX records, with no encoder at run time.

Raw GSM and GSM-in-WAV bodies repeat the frames of two small clips encoded once with ffmpeg and
shipped beside this module (see `make_clips.py`); PCM WAV is synthesised here. A file is described
by an `AudioStream` (header, repeating pattern, size), so a ten-minute recording is produced chunk
by chunk and never held in memory whole.
"""

from __future__ import annotations

import functools
import math
import struct
import sys
from array import array
from collections.abc import Iterator
from dataclasses import dataclass
from importlib import resources

SAMPLE_RATE_HZ = 8000
PCM_BYTES_PER_S = 16_000

GSM_FRAME_BYTES = 33
GSM_FRAME_SAMPLES = 160
GSM_BYTES_PER_S = 1650

GSM_MS_BLOCK_BYTES = 65
GSM_MS_BLOCK_SAMPLES = 320
GSM_MS_BYTES_PER_S = 1625

WAVE_FORMAT_PCM = 1
WAVE_FORMAT_GSM610 = 0x31

CLIP_SECONDS = 3
RAW_GSM_CLIP = "clip.gsm"
GSM_MS_CLIP = "clip_gsm_ms.bin"

_DEFAULT_CHUNK_BYTES = 64 * 1024


@dataclass(frozen=True)
class AudioStream:
    """One file's bytes: `header`, then `pattern` repeated and cut to `body_bytes`, then `trailer`.

    `pattern` is frame-aligned, so whole frames cut from its repetition are valid audio.
    """

    header: bytes
    pattern: bytes
    body_bytes: int
    trailer: bytes = b""

    @property
    def size_bytes(self) -> int:
        """The file's total length in bytes."""
        return len(self.header) + self.body_bytes + len(self.trailer)

    def chunks(self, chunk_bytes: int = _DEFAULT_CHUNK_BYTES) -> Iterator[bytes]:
        """Yield the file's bytes in order, in pieces of at most `chunk_bytes`."""
        if self.header:
            yield self.header
        if self.body_bytes:
            yield from _repeat(self.pattern, self.body_bytes, chunk_bytes)
        if self.trailer:
            yield self.trailer

    def read_all(self) -> bytes:
        """Return the whole file at once (fine for tests; the server streams `chunks()`)."""
        return b"".join(self.chunks())


def _repeat(pattern: bytes, total: int, chunk_bytes: int) -> Iterator[bytes]:
    # One tile at least a chunk plus a pattern long lets every chunk be a single slice.
    tile = pattern * (chunk_bytes // len(pattern) + 2)
    sent = 0
    while sent < total:
        offset = sent % len(pattern)
        size = min(chunk_bytes, total - sent)
        yield tile[offset : offset + size]
        sent += size


def gsm_raw_stream(duration_s: float) -> AudioStream:
    """Raw GSM 06.10 (headerless 33-byte frames of 20 ms): round(duration_s / 0.02) frames."""
    frames = _units(duration_s, GSM_FRAME_SAMPLES)
    return AudioStream(b"", _raw_gsm_clip(), frames * GSM_FRAME_BYTES)


def wav_pcm_stream(duration_s: float) -> AudioStream:
    """RIFF WAV, 16-bit PCM, 8 kHz mono: a 44-byte header, round(duration_s * 8000) samples."""
    data_bytes = _units(duration_s, 1) * 2
    return AudioStream(_pcm_wav_header(data_bytes), speech_like_pcm(), data_bytes)


def wav_gsm_stream(duration_s: float) -> AudioStream:
    """GSM-in-WAV (format tag 49, 65-byte blocks of 40 ms) as Asterisk's wav49 writes it.

    The 60-byte header has a `fact` chunk with the sample count; an odd data chunk is followed
    by the pad byte RIFF requires.
    """
    blocks = _units(duration_s, GSM_MS_BLOCK_SAMPLES)
    data_bytes = blocks * GSM_MS_BLOCK_BYTES
    pad = b"\x00" * (data_bytes % 2)
    return AudioStream(_gsm_wav_header(blocks), _gsm_ms_clip(), data_bytes, pad)


def header_only_wav_stream() -> AudioStream:
    """A PCM WAV header announcing zero samples: what Asterisk leaves for an unanswered call."""
    return AudioStream(_pcm_wav_header(0), b"", 0)


def lying_wav_stream(duration_s: float) -> AudioStream:
    """A PCM WAV whose header claims `duration_s` of audio but holds only half of it (a file
    cut short while the PBX wrote it, or a header that lies)."""
    data_bytes = _units(duration_s, 1) * 2
    return AudioStream(_pcm_wav_header(data_bytes), speech_like_pcm(), data_bytes // 2)


def gsm_raw_bytes(duration_s: float) -> bytes:
    """The whole of `gsm_raw_stream(duration_s)`: 1,650 bytes per second of audio."""
    return gsm_raw_stream(duration_s).read_all()


def wav_pcm_bytes(duration_s: float) -> bytes:
    """The whole of `wav_pcm_stream(duration_s)`: 44 + 16,000 bytes per second of audio."""
    return wav_pcm_stream(duration_s).read_all()


def wav_gsm_bytes(duration_s: float) -> bytes:
    """The whole of `wav_gsm_stream(duration_s)`: 60 + 1,625 bytes per second (+1 pad if odd)."""
    return wav_gsm_stream(duration_s).read_all()


def header_only_wav() -> bytes:
    """The 44 bytes of `header_only_wav_stream()`."""
    return header_only_wav_stream().read_all()


def _units(duration_s: float, samples_per_unit: int) -> int:
    """Return how many units of `samples_per_unit` samples make `duration_s`; reject negatives."""
    if not math.isfinite(duration_s) or duration_s < 0:
        raise ValueError(f"duration_s must be a finite number >= 0, got {duration_s!r}")
    return round(duration_s * SAMPLE_RATE_HZ / samples_per_unit)


def _pcm_wav_header(data_bytes: int) -> bytes:
    return struct.pack(
        "<4sI4s4sIHHIIHH4sI",
        b"RIFF",
        36 + data_bytes,
        b"WAVE",
        b"fmt ",
        16,
        WAVE_FORMAT_PCM,
        1,
        SAMPLE_RATE_HZ,
        PCM_BYTES_PER_S,
        2,
        16,
        b"data",
        data_bytes,
    )


def _gsm_wav_header(blocks: int) -> bytes:
    data_bytes = blocks * GSM_MS_BLOCK_BYTES
    riff_bytes = 4 + (8 + 20) + (8 + 4) + (8 + data_bytes + data_bytes % 2)
    return struct.pack(
        "<4sI4s4sIHHIIHHHH4sII4sI",
        b"RIFF",
        riff_bytes,
        b"WAVE",
        b"fmt ",
        20,
        WAVE_FORMAT_GSM610,
        1,
        SAMPLE_RATE_HZ,
        GSM_MS_BYTES_PER_S,
        GSM_MS_BLOCK_BYTES,
        0,  # bits per sample: meaningless for GSM, and Asterisk writes 0
        2,  # cbSize: the extra format bytes that follow
        GSM_MS_BLOCK_SAMPLES,
        b"fact",
        4,
        blocks * GSM_MS_BLOCK_SAMPLES,
        b"data",
        data_bytes,
    )


_PACKAGE = __package__ or "archiver.lab.simulator"


@functools.cache
def _raw_gsm_clip() -> bytes:
    clip = resources.files(_PACKAGE).joinpath(RAW_GSM_CLIP).read_bytes()
    if not clip or len(clip) % GSM_FRAME_BYTES or any(b >> 4 != 0xD for b in clip[::33]):
        raise RuntimeError(f"{RAW_GSM_CLIP} is not whole GSM frames; regenerate it (make_clips)")
    return clip


@functools.cache
def _gsm_ms_clip() -> bytes:
    clip = resources.files(_PACKAGE).joinpath(GSM_MS_CLIP).read_bytes()
    if not clip or len(clip) % GSM_MS_BLOCK_BYTES:
        raise RuntimeError(f"{GSM_MS_CLIP} is not whole GSM-in-WAV blocks; regenerate it")
    return clip


# Vowel formants (F1, F2, F3) in Hz, one vowel per "word" of the synthetic phrase.
_FORMANTS_HZ = {
    "a": (730.0, 1090.0, 2440.0),
    "e": (530.0, 1840.0, 2480.0),
    "i": (270.0, 2290.0, 3010.0),
    "o": (570.0, 840.0, 2410.0),
}
# (start s, end s, vowel): silence at both ends so the clip loops without a click.
_WORDS = ((0.10, 0.62, "a"), (0.80, 1.30, "o"), (1.48, 2.05, "e"), (2.25, 2.85, "i"))
_TABLE_SIZE = 512
_NOMINAL_F0_HZ = 120.0


@functools.cache
def speech_like_pcm(seconds: int = CLIP_SECONDS) -> bytes:
    """Return `seconds` of a voiced, speech-like phrase as 16-bit little-endian PCM at 8 kHz.

    Pitch glides around 120 Hz through four vowels with syllable-rate loudness changes, so codecs
    and silence detectors see something like a voice rather than a pure tone. Deterministic.
    """
    tables = {vowel: _vowel_table(vowel) for vowel in _FORMANTS_HZ}
    samples = array("h", bytes(2 * seconds * SAMPLE_RATE_HZ))
    phase = 0.0
    for i in range(len(samples)):
        t = i / SAMPLE_RATE_HZ
        phase = (phase + _pitch_hz(t) / SAMPLE_RATE_HZ) % 1.0
        word = next((w for w in _WORDS if w[0] <= t < w[1]), None)
        if word is None:
            continue
        start, end, vowel = word
        loudness = math.sin(math.pi * (t - start) / (end - start)) ** 0.5
        loudness *= 0.7 + 0.3 * math.cos(2 * math.pi * 5.0 * (t - start))
        samples[i] = round(0.45 * 32767 * loudness * tables[vowel][int(phase * _TABLE_SIZE)])
    if sys.byteorder == "big":
        samples.byteswap()
    return samples.tobytes()


def _pitch_hz(t: float) -> float:
    return _NOMINAL_F0_HZ + 20.0 * math.sin(2 * math.pi * 0.9 * t) - 8.0 * t


def _vowel_table(vowel: str) -> list[float]:
    """One pitch period of a vowel: harmonics of 120 Hz weighted by resonances at its formants."""
    weights = []
    for k in range(1, int(3400 / _NOMINAL_F0_HZ) + 1):
        f = k * _NOMINAL_F0_HZ
        resonance = sum(1.0 / (1.0 + ((f - fk) / 90.0) ** 2) for fk in _FORMANTS_HZ[vowel])
        weights.append((k, (0.1 + resonance) / k**0.5))
    table = [
        sum(w * math.sin(2 * math.pi * k * n / _TABLE_SIZE) for k, w in weights)
        for n in range(_TABLE_SIZE)
    ]
    peak = max(abs(v) for v in table)
    return [v / peak for v in table]
