"""Real Asterisk-style audio, made by Debian's sox through libgsm (the codec Asterisk's writers
use), then cut and patched the ways a PBX leaves files: a partial last GSM frame, WAV49 with a
`fact` chunk and a pad byte, RIFF/data sizes 0 or 0xFFFFFFFF (cut off before the header was
fixed), `LIST` chunks, a half last sample. Each one transcodes to an MP3 whose length matches
its audio, or ends empty/failed with a reason; none raises anything else, none hangs.

The files are generated per test module in a temporary folder (four sox runs, ~0.2 s), not
committed. `scripts/bootstrap` installs sox and libsox-fmt-all.
"""

from __future__ import annotations

import shutil
import struct
import subprocess
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest

from archiver.pipeline.transcode import (
    BadAudio,
    BatchJob,
    SourceFormat,
    TranscodeError,
    TranscodeResult,
    find_ffmpeg,
    probe_source,
    transcode_batch,
    transcode_to_mp3,
)

SECONDS = 3.0
LIST_CHUNK = b"LIST" + struct.pack("<I", 26) + b"INFOISFT" + struct.pack("<I", 14)
LIST_CHUNK += b"Asterisk PBX\0\0"


@dataclass(frozen=True)
class Made:
    """sox's three Asterisk formats of one clip."""

    gsm: bytes  # raw GSM 06.10, 33-byte frames
    wav49: bytes  # Microsoft GSM in WAV: tag 49, 65-byte blocks, a fact chunk
    pcm: bytes  # 8 kHz 16-bit mono PCM WAV


def _sox(*args: str) -> None:
    subprocess.run(["sox", *args], check=True, capture_output=True, timeout=60)


@pytest.fixture(scope="module")
def made(tmp_path_factory: pytest.TempPathFactory) -> Made:
    assert shutil.which("sox"), "sox is missing: scripts/bootstrap installs sox libsox-fmt-all"
    folder = tmp_path_factory.mktemp("sox")
    clip = folder / "clip.wav"
    # A sweep with a tremolo: not silence, so every codec has something to code.
    _sox("-n", "-r", "8000", "-c", "1", "-b", "16", str(clip), "synth", str(SECONDS),
         "sine", "300:1200", "tremolo", "5", "60", "vol", "0.6")  # fmt: skip
    _sox(str(clip), "-r", "8000", "-c", "1", "-t", "gsm", str(folder / "a.gsm"))
    _sox(str(clip), "-r", "8000", "-c", "1", "-e", "gsm-full-rate", str(folder / "a.WAV"))
    _sox(str(clip), "-r", "8000", "-c", "1", "-e", "signed", "-b", "16", str(folder / "a.wav"))
    return Made(
        (folder / "a.gsm").read_bytes(),
        (folder / "a.WAV").read_bytes(),
        (folder / "a.wav").read_bytes(),
    )


def chunks(data: bytes) -> list[tuple[bytes, int, int]]:
    """(id, declared size, header offset) of each RIFF chunk."""
    found, position = [], 12
    while position + 8 <= len(data):
        chunk_id, size = struct.unpack("<4sI", data[position : position + 8])
        found.append((chunk_id, size, position))
        position += 8 + size + (size & 1)
    return found


def data_offset(data: bytes) -> int:
    return next(offset for chunk_id, _, offset in chunks(data) if chunk_id == b"data") + 8


def with_size(data: bytes, chunk: bytes, size: int) -> bytes:
    """`data` with the declared size of its first `chunk` (or of RIFF itself) set to `size`."""
    offset = 0 if chunk == b"RIFF" else data_offset(data) - 8
    if chunk not in (b"RIFF", b"data"):
        raise ValueError(chunk)
    return data[: offset + 4] + struct.pack("<I", size) + data[offset + 8 :]


def with_list_before_data(data: bytes) -> bytes:
    at = data_offset(data) - 8
    patched = data[:at] + LIST_CHUNK + data[at:]
    return with_size(patched, b"RIFF", len(patched) - 8)


def wav49_odd_with_pad(data: bytes) -> bytes:
    """An odd number of 65-byte blocks, the data chunk's size odd and a pad byte after it, as
    Asterisk's WAV49 writer leaves it."""
    start = data_offset(data)
    blocks = (len(data) - start) // 65
    blocks -= 1 - blocks % 2  # odd (3 s is 75 blocks already)
    body = data[start : start + 65 * blocks]
    patched = with_size(data[:start] + body + b"\0", b"data", len(body))
    return with_size(patched, b"RIFF", len(patched) - 8)


@dataclass(frozen=True)
class Case:
    """A file and what must become of it: an MP3 of `seconds` (within the transcoder's
    tolerance), or BadAudio with `empty` and `words` in the reason."""

    build: Callable[[Made], bytes]
    fmt: SourceFormat | None
    seconds: float | None = None
    empty: bool = False
    words: str = ""


FRAME_S = 160 / 8000
CASES: dict[str, Case] = {
    "raw GSM": Case(lambda m: m.gsm, SourceFormat.GSM_RAW, SECONDS),
    "raw GSM, partial last frame": Case(
        lambda m: m.gsm + m.gsm[:17], SourceFormat.GSM_RAW, SECONDS
    ),
    "raw GSM, cut mid-file": Case(
        lambda m: m.gsm[: 33 * 60 + 5], SourceFormat.GSM_RAW, 60 * FRAME_S
    ),
    "raw GSM, less than a frame": Case(lambda m: m.gsm[:20], None, empty=True, words="frame"),
    "WAV49 as sox writes it (fact chunk)": Case(lambda m: m.wav49, SourceFormat.WAV_GSM, SECONDS),
    "WAV49, odd data size and pad byte": Case(
        lambda m: wav49_odd_with_pad(m.wav49), SourceFormat.WAV_GSM, SECONDS
    ),
    "WAV49, sizes 0, cut mid-block": Case(
        lambda m: with_size(with_size(m.wav49, b"data", 0), b"RIFF", 0)[
            : data_offset(m.wav49) + 65 * 40 + 20
        ],
        SourceFormat.WAV_GSM,
        40 * 2 * FRAME_S,
    ),
    "WAV49, LIST chunk": Case(
        lambda m: with_list_before_data(m.wav49), SourceFormat.WAV_GSM, SECONDS
    ),
    "WAV49, header only": Case(
        lambda m: with_size(m.wav49[: data_offset(m.wav49)], b"data", 0),
        None,
        empty=True,
        words="no complete audio frame",
    ),
    "PCM, RIFF size 0": Case(lambda m: with_size(m.pcm, b"RIFF", 0), SourceFormat.WAV_PCM, SECONDS),
    "PCM, RIFF and data size 0": Case(
        lambda m: with_size(with_size(m.pcm, b"data", 0), b"RIFF", 0),
        SourceFormat.WAV_PCM,
        SECONDS,
    ),
    "PCM, RIFF and data size 0xFFFFFFFF": Case(
        lambda m: with_size(with_size(m.pcm, b"data", 0xFFFFFFFF), b"RIFF", 0xFFFFFFFF),
        SourceFormat.WAV_PCM,
        SECONDS,
    ),
    "PCM, LIST chunk before data": Case(
        lambda m: with_list_before_data(m.pcm), SourceFormat.WAV_PCM, SECONDS
    ),
    "PCM, LIST chunk after data": Case(
        lambda m: with_size(m.pcm + LIST_CHUNK, b"RIFF", len(m.pcm) + len(LIST_CHUNK) - 8),
        SourceFormat.WAV_PCM,
        SECONDS,
    ),
    "PCM, last sample cut in half": Case(lambda m: m.pcm[:-1], SourceFormat.WAV_PCM, SECONDS),
    "PCM, sizes 0, odd length": Case(
        lambda m: with_size(with_size(m.pcm, b"data", 0), b"RIFF", 0)[:-12_001],
        SourceFormat.WAV_PCM,
        SECONDS - 0.75,
    ),
    "PCM, header fixed but half the data missing": Case(
        lambda m: m.pcm[: len(m.pcm) // 2], None, words="claims"
    ),
    "PCM, header only": Case(
        lambda m: with_size(m.pcm[: data_offset(m.pcm)], b"data", 0),
        None,
        empty=True,
        words="no complete audio frame",
    ),
}


def _write(tmp_path: Path, made: Made, name: str) -> Path:
    source = tmp_path / "rec.src"
    source.write_bytes(CASES[name].build(made))
    return source


def _check(case: Case, outcome: TranscodeResult | BaseException) -> None:
    if case.seconds is None:
        assert isinstance(outcome, BadAudio), outcome
        assert outcome.empty is case.empty
        assert case.words in outcome.reason
        return
    assert isinstance(outcome, TranscodeResult), outcome
    assert outcome.source.format is case.fmt
    assert outcome.source.duration_s == pytest.approx(case.seconds, abs=0.021)
    # The MP3 plays as long as the audio (MP3 frames and encoder padding round it up).
    assert outcome.mp3_duration_s == pytest.approx(case.seconds, abs=0.3)


@pytest.mark.parametrize("engine", ["pydub", "ffmpeg"])
@pytest.mark.parametrize("name", list(CASES))
def test_each_file_transcodes_or_ends_with_a_reason(
    made: Made, tmp_path: Path, name: str, engine: str
) -> None:
    source = _write(tmp_path, made, name)
    original = source.read_bytes()
    outcome: TranscodeResult | BaseException
    try:
        outcome = transcode_to_mp3(
            source, tmp_path / "out.mp3", ffmpeg=find_ffmpeg(None), tags={"title": name},
            engine=engine,  # type: ignore[arg-type]
            timeout_s=60,
        )  # fmt: skip
    except (BadAudio, TranscodeError) as error:
        outcome = error
    _check(CASES[name], outcome)
    # The source is never modified (a repair works on a copy), and no temporary is left.
    assert source.read_bytes() == original
    left = sorted(p.name for p in tmp_path.iterdir())
    assert left == (["out.mp3", "rec.src"] if CASES[name].seconds else ["rec.src"])


def test_probe_agrees_with_the_header_sox_wrote(made: Made, tmp_path: Path) -> None:
    (tmp_path / "a.WAV").write_bytes(made.wav49)
    info = probe_source(tmp_path / "a.WAV")
    assert info.format is SourceFormat.WAV_GSM
    assert [chunk for chunk, _, _ in chunks(made.wav49)] == [b"fmt ", b"fact", b"data"]
    (tmp_path / "a.gsm").write_bytes(made.gsm)
    assert probe_source(tmp_path / "a.gsm").duration_s == SECONDS


def test_all_of_them_in_one_batch(made: Made, tmp_path: Path) -> None:
    """The batching engine: repaired files go alone, the rest share a process, and every job
    gets its own outcome."""
    jobs = []
    for index, name in enumerate(CASES):
        source = tmp_path / f"{index}.src"
        source.write_bytes(CASES[name].build(made))
        jobs.append(BatchJob(source, tmp_path / f"{index}.mp3", {"title": name}, SECONDS))
    outcomes = transcode_batch(jobs, ffmpeg=find_ffmpeg(None), bitrate="32k", timeout_s=60)
    for name, outcome in zip(CASES, outcomes, strict=True):
        _check(CASES[name], outcome)
