"""Several recordings through one ffmpeg: same MP3s as one file at a time, each failing alone."""

from __future__ import annotations

import asyncio
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from mutagen.id3 import ID3

from archiver.lab.simulator import audio
from archiver.pipeline.transcode import (
    BadAudio,
    BatchJob,
    BatchTranscoder,
    TranscodeError,
    TranscodeResult,
    find_ffmpeg,
    transcode_batch,
    transcode_to_mp3,
)

# The ffmpeg the product would use (PATH, then the static wheel): see find_ffmpeg.
FFMPEG = find_ffmpeg(None)


def _sources(folder: Path) -> list[Path]:
    folder.mkdir(exist_ok=True)
    made = {
        "a.gsm": audio.gsm_raw_bytes(3),
        "b.wav": audio.wav_pcm_bytes(4),
        "c.WAV": audio.wav_gsm_bytes(2),
    }
    for name, data in made.items():
        (folder / name).write_bytes(data)
    return [folder / name for name in made]


def _jobs(sources: list[Path], out: Path) -> list[BatchJob]:
    out.mkdir(exist_ok=True)
    return [
        BatchJob(src, out / f"{src.stem}.mp3", {"title": src.name, "caller": "100"}, 3.0)
        for src in sources
    ]


def _counting_ffmpeg(folder: Path, extra: str = "") -> tuple[str, Path]:
    """Real ffmpeg behind a wrapper that appends one line per run to a log (and runs `extra`)."""
    folder.mkdir()
    log = folder / "runs.log"
    script = folder / "ffmpeg"
    script.write_text(f'#!/bin/bash\necho run >> {log}\n{extra}\nexec {FFMPEG} "$@"\n')
    script.chmod(0o755)
    return str(script), log


def _runs(log: Path) -> int:
    return len(log.read_text().splitlines()) if log.exists() else 0


def test_one_process_makes_the_same_mp3s_as_one_file_at_a_time(tmp_path: Path) -> None:
    ffmpeg, log = _counting_ffmpeg(tmp_path / "bin")
    jobs = _jobs(_sources(tmp_path / "src"), tmp_path / "out")

    outcomes = transcode_batch(jobs, ffmpeg=ffmpeg, bitrate="32k")

    assert _runs(log) == 1
    for job, outcome in zip(jobs, outcomes, strict=True):
        assert isinstance(outcome, TranscodeResult), outcome
        alone = transcode_to_mp3(
            job.source,
            tmp_path / "alone.mp3",
            ffmpeg=FFMPEG,
            bitrate="32k",
            tags=job.tags,
            engine="ffmpeg",
        )
        assert job.mp3.read_bytes() == alone.mp3_path.read_bytes()
        assert outcome.md5_hex == alone.md5_hex
        assert ID3(job.mp3)["TIT2"].text == [job.source.name]
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["a.mp3", "b.mp3", "c.mp3"]


def test_bad_and_empty_sources_fail_alone_before_ffmpeg_runs(tmp_path: Path) -> None:
    sources = _sources(tmp_path / "src")
    (tmp_path / "src" / "junk.gsm").write_bytes(b"\x00" * 330)
    (tmp_path / "src" / "empty.wav").write_bytes(audio.header_only_wav())
    sources[1:1] = [tmp_path / "src" / "junk.gsm", tmp_path / "src" / "empty.wav"]
    jobs = _jobs(sources, tmp_path / "out")

    outcomes = transcode_batch(jobs, ffmpeg=FFMPEG, bitrate="32k")

    assert isinstance(outcomes[1], BadAudio) and not outcomes[1].empty
    assert isinstance(outcomes[2], BadAudio) and outcomes[2].empty
    assert [isinstance(o, TranscodeResult) for o in outcomes] == [True, False, False, True, True]
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["a.mp3", "b.mp3", "c.mp3"]


def test_a_file_that_breaks_the_shared_ffmpeg_fails_alone(tmp_path: Path) -> None:
    # Any run that reads b.wav fails, as if ffmpeg choked on it mid-way: the shared run fails,
    # then each file is redone alone and only b fails.
    ffmpeg, log = _counting_ffmpeg(
        tmp_path / "bin", 'if [[ "$*" == *"b.wav"* ]]; then echo "b.wav: boom" >&2; exit 1; fi'
    )
    jobs = _jobs(_sources(tmp_path / "src"), tmp_path / "out")

    outcomes = transcode_batch(jobs, ffmpeg=ffmpeg, bitrate="32k")

    assert isinstance(outcomes[0], TranscodeResult)
    assert isinstance(outcomes[1], TranscodeError) and "boom" in outcomes[1].reason
    assert isinstance(outcomes[2], TranscodeResult)
    assert _runs(log) == 1 + 3
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["a.mp3", "c.mp3"]


def test_an_output_that_does_not_check_out_is_redone_alone(tmp_path: Path) -> None:
    # The shared run cuts every output to 1 s; files alone are encoded whole.
    shared_ok = tmp_path / "shared-ok"
    ffmpeg, log = _counting_ffmpeg(
        tmp_path / "bin",
        'if [ "$(grep -o -- "-i " <<< "$*" | wc -l)" -gt 1 ]; then\n'
        '  args=(); for a in "$@"; do [ "$a" = -vn ] && args+=(-t 1) || args+=("$a"); done\n'
        f'  {FFMPEG} "${{args[@]}}" && touch {shared_ok}; exit\n'
        "fi",
    )
    jobs = _jobs(_sources(tmp_path / "src"), tmp_path / "out")

    outcomes = transcode_batch(jobs, ffmpeg=ffmpeg, bitrate="32k")

    assert all(isinstance(o, TranscodeResult) for o in outcomes), outcomes
    assert [round(o.mp3_duration_s) for o in outcomes if isinstance(o, TranscodeResult)] == [
        3,
        4,
        2,
    ]
    assert shared_ok.exists()  # the shared run succeeded; its outputs were what failed
    assert _runs(log) == 1 + 3
    assert not [p for p in (tmp_path / "out").iterdir() if p.suffix == ".part"]


async def test_the_transcoder_batches_what_queues_up_and_answers_each_caller(
    tmp_path: Path,
) -> None:
    ffmpeg, log = _counting_ffmpeg(tmp_path / "bin")
    sources = _sources(tmp_path / "src") * 3
    jobs = [
        BatchJob(src, tmp_path / "out" / f"{n}.mp3", {"title": str(n)}, 3.0)
        for n, src in enumerate(sources)
    ]
    (tmp_path / "out").mkdir()
    with ThreadPoolExecutor(1) as pool:
        transcoder = BatchTranscoder(pool, workers=1, ffmpeg=ffmpeg, bitrate="32k", max_files=4)
        results = await asyncio.gather(*(transcoder.transcode(job) for job in jobs))

    assert [r.mp3_path for r in results] == [job.mp3 for job in jobs]
    assert [ID3(r.mp3_path)["TIT2"].text for r in results] == [[str(n)] for n in range(9)]
    # The first job starts alone at once; the eight queued behind it go four at a time.
    assert _runs(log) == 3


async def test_the_transcoder_raises_each_callers_own_error(tmp_path: Path) -> None:
    sources = _sources(tmp_path / "src")
    (tmp_path / "src" / "junk.gsm").write_bytes(b"\x00" * 330)
    jobs = _jobs([*sources, tmp_path / "src" / "junk.gsm"], tmp_path / "out")
    with ThreadPoolExecutor(1) as pool:
        transcoder = BatchTranscoder(pool, workers=1, ffmpeg=FFMPEG, bitrate="32k")
        outcomes = await asyncio.gather(
            *(transcoder.transcode(job) for job in jobs), return_exceptions=True
        )
    assert [type(o).__name__ for o in outcomes] == ["TranscodeResult"] * 3 + ["BadAudio"]


@pytest.mark.parametrize("count", [0, 1])
def test_small_batches(tmp_path: Path, count: int) -> None:
    jobs = _jobs(_sources(tmp_path / "src")[:count], tmp_path / "out")
    outcomes = transcode_batch(jobs, ffmpeg=FFMPEG, bitrate="32k")
    assert len(outcomes) == count
    assert all(isinstance(o, TranscodeResult) for o in outcomes)


def _logging_ffmpeg(folder: Path) -> tuple[str, Path]:
    """Real ffmpeg behind a wrapper that logs each run's arguments, one line per run."""
    folder.mkdir()
    log = folder / "args.log"
    script = folder / "ffmpeg"
    script.write_text(f'#!/bin/bash\necho "$*" >> {log}\nexec {FFMPEG} "$@"\n')
    script.chmod(0o755)
    return str(script), log


async def test_auto_uses_pydub_alone_and_shared_ffmpeg_for_a_queue(tmp_path: Path) -> None:
    """`engine = "auto"`: a job that finds the transcoder idle goes through pydub (whose runs
    carry no `-map`); jobs that queued behind it share ffmpeg processes. Same MP3 bytes."""
    ffmpeg, log = _logging_ffmpeg(tmp_path / "bin")
    sources = _sources(tmp_path / "src")
    (tmp_path / "out").mkdir()
    with ThreadPoolExecutor(1) as pool:
        transcoder = BatchTranscoder(
            pool, workers=1, ffmpeg=ffmpeg, bitrate="32k", max_files=8, solo_engine="pydub"
        )
        alone = await transcoder.transcode(
            BatchJob(sources[0], tmp_path / "out" / "alone.mp3", {"title": "x"}, 3.0)
        )
        solo_runs = log.read_text().splitlines()
        log.unlink()
        queued = [
            BatchJob(src, tmp_path / "out" / f"{n}.mp3", {"title": "x"}, 3.0)
            for n, src in enumerate(sources * 3)
        ]
        results = await asyncio.gather(*(transcoder.transcode(job) for job in queued))

    assert solo_runs and all("-map" not in run for run in solo_runs)  # pydub's own commands
    batch_runs = log.read_text().splitlines()
    assert max(run.count(" -i ") for run in batch_runs) > 1  # shared processes
    by_ffmpeg = transcode_to_mp3(
        sources[0], tmp_path / "ref.mp3", ffmpeg=FFMPEG, tags={"title": "x"},
        engine="ffmpeg",
    )  # fmt: skip
    assert alone.md5_hex == by_ffmpeg.md5_hex
    assert results[0].md5_hex == by_ffmpeg.md5_hex  # the same source, batched
