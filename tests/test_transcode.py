"""The transcode stage against real ffmpeg binaries: Debian's and imageio-ffmpeg's static build.

Sources come from the simulator's encoder-free audio builders, so no GSM encoder is needed.
"""

from __future__ import annotations

import base64
import hashlib
import pickle
import random
import stat
import struct
import subprocess
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import imageio_ffmpeg
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from mutagen.id3 import ID3
from mutagen.mp3 import MP3

from archiver.lab.simulator import audio
from archiver.pipeline.transcode import (
    BadAudio,
    Engine,
    FfmpegNotFound,
    SourceFormat,
    SourceInfo,
    TranscodeError,
    TranscodeResult,
    find_ffmpeg,
    probe_source,
    transcode_to_mp3,
)

# The ffmpeg the product would use (PATH, then the static wheel): see find_ffmpeg.
FFMPEG = find_ffmpeg(None)
STATIC_FFMPEG = imageio_ffmpeg.get_ffmpeg_exe()
FFMPEGS = {"found": FFMPEG, "static": STATIC_FFMPEG}
ENGINES: tuple[Engine, ...] = ("pydub", "ffmpeg")
SECONDS = 3.0

TAGS = {
    "title": "100 → 903123320404",
    "artist": "100",
    "album": "trunk-sip-908502591905",
    "date": "2016-11-18T11:03:32+03:00",
    "comment": "PBX pbx-1, uniqueid 1479456212.42",
    "caller": "100",
    "callee": "903123320404",
    "duration": "69",
}

SOURCES: dict[SourceFormat, Callable[[float], bytes]] = {
    SourceFormat.GSM_RAW: audio.gsm_raw_bytes,
    SourceFormat.WAV_PCM: audio.wav_pcm_bytes,
    SourceFormat.WAV_GSM: audio.wav_gsm_bytes,
}
SUFFIXES = {
    SourceFormat.GSM_RAW: ".gsm",
    SourceFormat.WAV_PCM: ".wav",
    SourceFormat.WAV_GSM: ".wav",
}


def write(folder: Path, name: str, data: bytes) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / name
    path.write_bytes(data)
    return path


def source_file(tmp_path: Path, fmt: SourceFormat, seconds: float = SECONDS) -> Path:
    return write(tmp_path / "src", f"rec{SUFFIXES[fmt]}", SOURCES[fmt](seconds))


def pcm_wav(**fields: int) -> bytes:
    """A 16-bit mono 8 kHz PCM WAV of 0.5 s whose header fields may be overridden."""
    values = {"tag": 1, "channels": 1, "rate": 8000, "align": 2, "bits": 16, "data_bytes": 8000}
    values.update(fields)
    fmt = struct.pack(
        "<HHIIHH",
        values["tag"],
        values["channels"],
        values["rate"],
        values["rate"] * values["align"],
        values["align"],
        values["bits"],
    )
    body = b"WAVE" + b"fmt " + struct.pack("<I", len(fmt)) + fmt
    body += b"data" + struct.pack("<I", values["data_bytes"]) + bytes(8000)
    return b"RIFF" + struct.pack("<I", len(body)) + body


# --- probe_source -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("fmt", "audio_bytes"),
    [
        (SourceFormat.GSM_RAW, 150 * 33),
        (SourceFormat.WAV_PCM, 3 * 16_000),
        (SourceFormat.WAV_GSM, 75 * 65),
    ],
)
def test_probe_reports_format_duration_and_audio_size(
    tmp_path: Path, fmt: SourceFormat, audio_bytes: int
) -> None:
    info = probe_source(source_file(tmp_path, fmt))
    assert (info.format, info.audio_bytes) == (fmt, audio_bytes)
    assert info.duration_s == pytest.approx(SECONDS)


@pytest.mark.parametrize(
    ("name", "data", "fmt"),
    [
        ("gsm-in-wav.wav", audio.wav_gsm_bytes(1), SourceFormat.WAV_GSM),
        ("gsm-in-wav.gsm", audio.wav_gsm_bytes(1), SourceFormat.WAV_GSM),
        ("raw-gsm.wav", audio.gsm_raw_bytes(1), SourceFormat.GSM_RAW),
        ("pcm.gsm", audio.wav_pcm_bytes(1), SourceFormat.WAV_PCM),
        ("no-extension", audio.gsm_raw_bytes(1), SourceFormat.GSM_RAW),
    ],
)
def test_probe_decides_by_content_not_extension(
    tmp_path: Path, name: str, data: bytes, fmt: SourceFormat
) -> None:
    assert probe_source(write(tmp_path, name, data)).format is fmt


def test_probe_takes_gsm_in_wav_duration_from_whole_blocks(tmp_path: Path) -> None:
    # 1.01 s rounds to 25 blocks of 40 ms; the odd data chunk is followed by a pad byte.
    info = probe_source(write(tmp_path, "odd.wav", audio.wav_gsm_bytes(1.01)))
    assert info == SourceInfo(SourceFormat.WAV_GSM, 1.0, 25 * 65)


def _random_bytes(size: int) -> bytes:
    return random.Random(size).randbytes(size)


def _gsm_with_bad_frame(index: int) -> bytes:
    data = bytearray(audio.gsm_raw_bytes(2))
    data[index * 33] = 0x00
    return bytes(data)


def _truncated(data: bytes, keep: int) -> bytes:
    return data[:keep]


BAD_INPUTS = {
    # name: (file name, content, empty, words in the reason)
    "empty file": ("rec.gsm", b"", True, "empty"),
    "header-only WAV": ("rec.wav", audio.header_only_wav(), True, "no complete audio frame"),
    "less than a GSM frame": ("rec.gsm", b"\xd0" * 20, True, "less than one GSM frame"),
    "RIFF cut short": ("rec.wav", b"RIFF\x10\x00", True, "cut short"),
    "fmt but no data chunk": ("rec.wav", pcm_wav()[:36], True, "no data chunk"),
    "random bytes, whole frames": ("rec.gsm", _random_bytes(3300), False, "0xD"),
    "random bytes, odd size": ("rec.gsm", _random_bytes(1000), False, "0xD"),
    "GSM frame without magic": ("rec.gsm", _gsm_with_bad_frame(50), False, "frame 50"),
    "data size beyond the file": (
        "rec.wav",
        pcm_wav(data_bytes=1_000_000),
        False,
        "claims 1000000 B",
    ),
    "WAV cut mid-data": ("rec.wav", _truncated(audio.wav_pcm_bytes(1), 1000), False, "claims"),
    "MP3-in-WAV (tag 85)": ("rec.wav", pcm_wav(tag=85), False, "format tag 85"),
    "zero sample rate": ("rec.wav", pcm_wav(rate=0), False, "0 Hz"),
    "zero channels": ("rec.wav", pcm_wav(channels=0), False, "0 channel"),
    "12-bit PCM": ("rec.wav", pcm_wav(bits=12), False, "12 bits"),
    "RIFF but AVI": ("rec.wav", b"RIFF\x04\x00\x00\x00AVI LIST", False, "not WAVE"),
}


@pytest.mark.parametrize(("name", "data", "empty", "words"), BAD_INPUTS.values(), ids=BAD_INPUTS)
def test_probe_rejects_unusable_files_with_a_reason(
    tmp_path: Path, name: str, data: bytes, empty: bool, words: str
) -> None:
    with pytest.raises(BadAudio) as caught:
        probe_source(write(tmp_path, name, data))
    assert caught.value.empty is empty
    assert words in caught.value.reason
    assert len(caught.value.reason) < 120


@pytest.fixture(scope="module")
def fuzz_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One file rewritten per example (hypothesis refuses function-scoped fixtures)."""
    return tmp_path_factory.mktemp("fuzz") / "fuzz"


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.one_of(
        st.binary(max_size=400),
        st.binary(max_size=400).map(lambda b: b"RIFF\x00\x00\x00\x00WAVE" + b),
        st.builds(
            lambda head, cut: head[:cut],
            st.sampled_from([pcm_wav(), audio.wav_gsm_bytes(0.2), audio.gsm_raw_bytes(0.2)]),
            st.integers(0, 400),
        ),
    )
)
def test_probe_answers_any_bytes_with_source_info_or_bad_audio(
    fuzz_file: Path, data: bytes
) -> None:
    fuzz_file.write_bytes(data)
    try:
        info = probe_source(fuzz_file)
    except BadAudio as exc:
        assert exc.reason
    else:
        assert info.duration_s > 0
        assert 0 < info.audio_bytes <= len(data)


def _round_trip(value: object) -> Any:
    """What a process pool does to arguments, results and exceptions."""
    return pickle.loads(pickle.dumps(value))  # noqa: S301 -- our own objects, just pickled


def test_errors_survive_pickling_for_process_pools() -> None:
    bad = _round_trip(BadAudio("no frames", empty=True))
    assert (bad.reason, bad.empty) == ("no frames", True)
    failed = _round_trip(TranscodeError("ffmpeg exited with 1: boom"))
    assert failed.reason == "ffmpeg exited with 1: boom"


# --- find_ffmpeg --------------------------------------------------------------------------------


def _bin_with_ffmpeg(folder: Path, target: str = FFMPEG) -> Path:
    folder.mkdir()
    (folder / "ffmpeg").symlink_to(target)
    return folder / "ffmpeg"


def test_find_ffmpeg_uses_the_configured_path(tmp_path: Path) -> None:
    link = _bin_with_ffmpeg(tmp_path / "bin")
    assert find_ffmpeg(str(link)) == str(link)


@pytest.mark.parametrize("kind", ["missing", "not executable", "a directory"])
def test_find_ffmpeg_rejects_a_bad_configured_path_without_falling_back(
    tmp_path: Path, kind: str
) -> None:
    path = tmp_path / "ffmpeg"
    if kind == "not executable":
        path.write_bytes(b"")
        path.chmod(stat.S_IRUSR)
    elif kind == "a directory":
        path.mkdir()
    with pytest.raises(FfmpegNotFound, match=r"transcode\.ffmpeg"):
        find_ffmpeg(str(path))


def test_find_ffmpeg_falls_back_to_path(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    link = _bin_with_ffmpeg(tmp_path / "bin")
    monkeypatch.setenv("PATH", str(link.parent))
    assert find_ffmpeg(None) == str(link)


def test_find_ffmpeg_falls_back_to_imageio_ffmpeg(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))
    assert find_ffmpeg(None) == STATIC_FFMPEG


def test_find_ffmpeg_says_how_to_install_when_nothing_is_found(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))
    monkeypatch.setitem(sys.modules, "imageio_ffmpeg", None)  # as if the extra were not installed
    with pytest.raises(FfmpegNotFound, match=r"apt-get install ffmpeg.*archiver\[ffmpeg\]"):
        find_ffmpeg(None)


# --- transcode_to_mp3 ---------------------------------------------------------------------------


def _assert_decodes_cleanly(mp3: Path, ffmpeg: str) -> None:
    done = subprocess.run(
        [ffmpeg, "-nostdin", "-v", "error", "-i", str(mp3), "-f", "null", "-"],
        stdin=subprocess.DEVNULL,
        capture_output=True,
        check=False,
    )
    assert (done.returncode, done.stderr) == (0, b"")


def _mp3_info(mp3: Path) -> Any:
    return MP3(mp3).info  # mutagen is not annotated


def _assert_tags(mp3: Path) -> None:
    id3: Any = ID3(mp3)
    assert id3.version == (2, 3, 0)
    text = {key: str(frame) for key, frame in id3.items()}
    assert text["TIT2"] == TAGS["title"]
    assert text["TPE1"] == TAGS["artist"]
    assert text["TALB"] == TAGS["album"]
    # ID3v2.3 holds a year only (TYER): ffmpeg drops the rest of `date`, so keep the full
    # timestamp in a tag of its own if it matters. mutagen reads TYER back as TDRC.
    assert text["TDRC"] == "2016"
    # Keys ID3 has no frame for, `comment` included, become TXXX frames (not COMM).
    for key in ("comment", "caller", "callee", "duration"):
        assert text[f"TXXX:{key}"] == TAGS[key]


@pytest.mark.parametrize("fmt", SourceFormat, ids=lambda f: f.value)
def test_both_engines_write_the_same_mp3(tmp_path: Path, fmt: SourceFormat) -> None:
    """`engine = "ffmpeg"` is a faster path to the very same file, not a different product."""
    src = source_file(tmp_path, fmt)
    made = {
        engine: transcode_to_mp3(
            src, tmp_path / f"{engine}.mp3", ffmpeg=FFMPEG, tags=TAGS, engine=engine
        )
        for engine in ENGINES
    }
    assert made["pydub"].md5_hex == made["ffmpeg"].md5_hex


@pytest.mark.parametrize("engine", ENGINES)
@pytest.mark.parametrize("ffmpeg", FFMPEGS.values(), ids=FFMPEGS)
@pytest.mark.parametrize("fmt", SourceFormat, ids=lambda f: f.value)
def test_transcode_makes_a_checked_tagged_mp3(
    tmp_path: Path, fmt: SourceFormat, ffmpeg: str, engine: Engine
) -> None:
    src = source_file(tmp_path, fmt)
    dst = tmp_path / "out" / "rec.mp3"
    dst.parent.mkdir()

    result = transcode_to_mp3(src, dst, ffmpeg=ffmpeg, tags=TAGS, engine=engine)

    assert list(dst.parent.iterdir()) == [dst]  # no temporary file left behind
    assert result.source == probe_source(src)
    assert result.mp3_path == dst
    assert result.mp3_bytes == dst.stat().st_size
    digest = hashlib.md5(dst.read_bytes(), usedforsecurity=False).digest()
    assert (result.md5_hex, result.md5_b64) == (digest.hex(), base64.b64encode(digest).decode())
    info = _mp3_info(dst)
    assert (info.sample_rate, info.channels, info.bitrate) == (8000, 1, 32_000)
    assert result.mp3_duration_s == info.length
    assert abs(result.mp3_duration_s - SECONDS) <= 0.3
    _assert_decodes_cleanly(dst, ffmpeg)
    _assert_tags(dst)


@pytest.mark.parametrize("engine", ENGINES)
def test_transcode_never_runs_ffprobe(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, engine: Engine
) -> None:
    # PATH holds only ffmpeg and a trap named ffprobe that leaves a mark if it is ever run.
    link = _bin_with_ffmpeg(tmp_path / "bin")
    trap_mark = tmp_path / "ffprobe-ran"
    trap = link.parent / "ffprobe"
    trap.write_text(f"#!/bin/sh\ntouch {trap_mark}\nexit 1\n")
    trap.chmod(0o755)
    monkeypatch.setenv("PATH", str(link.parent))
    ffmpeg = find_ffmpeg(None)

    for fmt in SourceFormat:
        dst = tmp_path / f"{fmt.value}.mp3"
        transcode_to_mp3(source_file(tmp_path, fmt), dst, ffmpeg=ffmpeg, tags={}, engine=engine)
        assert dst.exists()
    assert not trap_mark.exists()


_CHILD = """
import sys
from pathlib import Path
from archiver.pipeline.transcode import transcode_to_mp3
result = transcode_to_mp3(
    Path(sys.argv[1]), Path(sys.argv[2]), ffmpeg=sys.argv[3], tags={}, engine=sys.argv[4]
)
print(result.mp3_duration_s)
"""


@pytest.mark.parametrize("engine", ENGINES)
def test_transcode_ignores_keys_waiting_on_stdin(tmp_path: Path, engine: Engine) -> None:
    # Debian's ffmpeg, when it may read stdin, takes a "q" there as "stop now" and writes a stub.
    src = source_file(tmp_path, SourceFormat.GSM_RAW, seconds=30)
    dst = tmp_path / "rec.mp3"
    done = subprocess.run(
        [sys.executable, "-c", _CHILD, str(src), str(dst), FFMPEG, engine],
        input=b"q" * 100_000,
        capture_output=True,
        check=False,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr.decode()[-500:]
    assert abs(float(done.stdout) - 30) < 0.3


def _fake_ffmpeg(folder: Path, body: str) -> str:
    """A shell script standing in for ffmpeg, for faults real ffmpeg cannot be made to commit."""
    folder.mkdir()
    script = folder / "ffmpeg"
    script.write_text(f"#!/bin/bash\n{body}\n")
    script.chmod(0o755)
    return str(script)


def _assert_failed_cleanly(out: Path, dst: Path, old: bytes | None) -> None:
    if old is None:
        assert list(out.iterdir()) == []
    else:
        assert list(out.iterdir()) == [dst]
        assert dst.read_bytes() == old


@pytest.mark.parametrize("engine", ENGINES)
@pytest.mark.parametrize("old", [None, b"previous"], ids=["no dst", "old dst"])
def test_an_ffmpeg_error_leaves_dst_untouched_and_no_temp(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, engine: Engine, old: bytes | None
) -> None:
    # pydub's own temporaries would go to the system temp directory: give it one we can inspect.
    system_tmp = tmp_path / "system-tmp"
    system_tmp.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(system_tmp))
    src = source_file(tmp_path, SourceFormat.GSM_RAW)
    out = tmp_path / "out"
    out.mkdir()
    dst = out / "rec.mp3"
    if old is not None:
        dst.write_bytes(old)

    with pytest.raises(TranscodeError) as caught:
        transcode_to_mp3(
            src,
            dst,
            ffmpeg=FFMPEG,
            bitrate="bogus",  # config validation would refuse it; ffmpeg does too
            tags=TAGS,
            engine=engine,
        )

    assert caught.value.reason.startswith("ffmpeg ")
    assert "\n" not in caught.value.reason
    assert len(caught.value.reason) <= 240
    _assert_failed_cleanly(out, dst, old)
    assert list(system_tmp.iterdir()) == []


@pytest.mark.parametrize("engine", ENGINES)
def test_a_short_mp3_is_rejected(tmp_path: Path, engine: Engine) -> None:
    # Real ffmpeg, told by a wrapper to stop encoding after one second.
    ffmpeg = _fake_ffmpeg(
        tmp_path / "bin",
        f'if [[ "$*" == *"-f mp3 "* ]]; then set -- "${{@:1:$#-1}}" -t 1 "${{@: -1}}"; fi\n'
        f'exec {FFMPEG} "$@"',
    )
    src = source_file(tmp_path, SourceFormat.WAV_GSM, seconds=5)
    out = tmp_path / "out"
    out.mkdir()

    with pytest.raises(TranscodeError, match=r"MP3 plays 1\.\d+ s but the source 5\.00 s"):
        transcode_to_mp3(src, out / "rec.mp3", ffmpeg=ffmpeg, tags={}, engine=engine)
    _assert_failed_cleanly(out, out / "rec.mp3", None)


@pytest.mark.parametrize("engine", ENGINES)
def test_output_that_is_not_mp3_is_rejected(tmp_path: Path, engine: Engine) -> None:
    ffmpeg = _fake_ffmpeg(
        tmp_path / "bin",
        f'if [[ "$*" == *"-f mp3 "* ]]; then echo junk > "${{@: -1}}"; exit 0; fi\n'
        f'exec {FFMPEG} "$@"',
    )
    out = tmp_path / "out"
    out.mkdir()
    with pytest.raises(TranscodeError, match="not a readable MP3"):
        transcode_to_mp3(
            source_file(tmp_path, SourceFormat.GSM_RAW),
            out / "rec.mp3",
            ffmpeg=ffmpeg,
            tags={},
            engine=engine,
        )
    _assert_failed_cleanly(out, out / "rec.mp3", None)


@pytest.mark.parametrize("engine", ENGINES)
def test_a_missing_ffmpeg_is_a_transcode_error(tmp_path: Path, engine: Engine) -> None:
    out = tmp_path / "out"
    out.mkdir()
    with pytest.raises(TranscodeError, match="cannot run ffmpeg"):
        transcode_to_mp3(
            source_file(tmp_path, SourceFormat.WAV_GSM),
            out / "rec.mp3",
            ffmpeg=str(tmp_path / "no-such-ffmpeg"),
            tags={},
            engine=engine,
        )
    _assert_failed_cleanly(out, out / "rec.mp3", None)


def test_the_ffmpeg_engine_kills_a_hung_ffmpeg(tmp_path: Path) -> None:
    ffmpeg = _fake_ffmpeg(tmp_path / "bin", "exec sleep 30")
    out = tmp_path / "out"
    out.mkdir()
    with pytest.raises(TranscodeError, match=r"longer than 0\.5 s"):
        transcode_to_mp3(
            source_file(tmp_path, SourceFormat.GSM_RAW),
            out / "rec.mp3",
            ffmpeg=ffmpeg,
            tags={},
            engine="ffmpeg",
            timeout_s=0.5,
        )
    _assert_failed_cleanly(out, out / "rec.mp3", None)


def test_bad_audio_creates_no_file(tmp_path: Path) -> None:
    out = tmp_path / "out"
    out.mkdir()
    src = write(tmp_path, "rec.wav", audio.header_only_wav())
    with pytest.raises(BadAudio) as caught:
        transcode_to_mp3(src, out / "rec.mp3", ffmpeg=STATIC_FFMPEG, tags={})
    assert caught.value.empty
    _assert_failed_cleanly(out, out / "rec.mp3", None)


@pytest.mark.parametrize("key", ["", "a=b"])
def test_tag_names_ffmpeg_cannot_take_are_refused(tmp_path: Path, key: str) -> None:
    out = tmp_path / "out"
    out.mkdir()
    with pytest.raises(ValueError, match="ID3 tag name"):
        transcode_to_mp3(
            source_file(tmp_path, SourceFormat.GSM_RAW),
            out / "rec.mp3",
            ffmpeg=STATIC_FFMPEG,
            tags={key: "x"},
        )
    _assert_failed_cleanly(out, out / "rec.mp3", None)


def test_relative_names_with_a_colon_work(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # Given "rec-11:03:32.gsm", ffmpeg looks for a protocol named "rec-11" unless the path is
    # absolute; recording names carry times.
    monkeypatch.chdir(tmp_path)
    src = write(Path(), "rec-11:03:32.gsm", audio.gsm_raw_bytes(1))
    for engine in ENGINES:
        dst = Path(f"{engine}-11:03:32.mp3")
        result = transcode_to_mp3(src, dst, ffmpeg=STATIC_FFMPEG, tags={}, engine=engine)
        assert result.mp3_path == dst
        assert dst.exists()


def test_results_are_plain_values() -> None:
    info = SourceInfo(SourceFormat.GSM_RAW, 1.0, 1650)
    result = TranscodeResult(Path("a.mp3"), 10, 1.0, info, "AAAA", "00")
    assert _round_trip(result) == result
    with pytest.raises(AttributeError):
        result.mp3_bytes = 11  # type: ignore[misc]
