"""Several short recordings through one ffmpeg process, each still checked on its own.

Debian's ffmpeg spends about 40-65 ms of CPU just starting (it links ~100 shared libraries); a
typical call recording takes about as long again to encode. One ffmpeg with N inputs and N MP3
outputs pays the start once: 8 PCM files of 20-150 s took 0.53 s CPU in one process against
0.91 s in eight (bench/ has the whole-corpus numbers). Each output gets exactly the arguments the
one-file ``"ffmpeg"`` engine gives it, so the MP3s are the same.

Isolation: every source is probed first (a bad one fails alone, before ffmpeg runs); every output
is checked, hashed and renamed on its own (`encode.finish_mp3`). If the shared ffmpeg fails
or one output does not check out, those files are transcoded again one by one, so one bad file
never fails the others.

`BatchTranscoder` feeds this from the daemon: a job starts at once when a worker is free; jobs
that arrive while every worker is busy wait and go together into the next free worker's batch.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Mapping, Sequence
from concurrent.futures import Executor
from dataclasses import dataclass
from pathlib import Path

import structlog

from archiver.pipeline.transcode.encode import (
    QUIET_NO_STDIN,
    Engine,
    TranscodeError,
    TranscodeResult,
    finish_mp3,
    input_args,
    lame_quality_args,
    metadata_args,
    output_args,
    run_ffmpeg,
    temp_path_next_to,
    transcode_to_mp3,
)
from archiver.pipeline.transcode.probe import BadAudio, Probe, probe_file

__all__ = ["BatchJob", "BatchTranscoder", "transcode_batch"]

log = structlog.get_logger(__name__)


@dataclass(frozen=True)
class BatchJob:
    """One file to transcode: source, destination, ID3 tags, and its expected length (for
    grouping only; the real duration comes from probing the source)."""

    source: Path
    mp3: Path
    tags: Mapping[str, str]
    audio_s: float = 0.0


Outcome = TranscodeResult | BaseException
_Queued = tuple[BatchJob, "asyncio.Future[TranscodeResult]"]
_Shared = tuple[int, Probe, list[str], Path]  # job index, probe, -metadata args, temp MP3


def transcode_batch(
    jobs: Sequence[BatchJob],
    *,
    ffmpeg: str,
    bitrate: str,
    timeout_s: float = 300.0,
    solo_engine: Engine = "ffmpeg",
    lame_quality: int | None = None,
) -> list[Outcome]:
    """Transcode every job, sharing one ffmpeg process; return a result or an exception per job,
    in order. The exceptions are those `transcode_to_mp3` raises (BadAudio, TranscodeError,
    ValueError, OSError); this function raises nothing for one job's problem.

    A batch that holds one usable file goes through `solo_engine` (same bytes either way).
    `timeout_s` bounds each file: the shared process gets `timeout_s` times the number of files.
    `lame_quality` as for `transcode_to_mp3`, for every output and every file redone alone.
    """
    solo = _Solo(ffmpeg, bitrate, timeout_s, lame_quality)
    outcomes: list[Outcome | None] = [None] * len(jobs)
    shared: list[_Shared] = []
    try:
        for index, job in enumerate(jobs):
            try:
                probe = probe_file(job.source)
                metadata = metadata_args(job.tags)
            except (BadAudio, ValueError, OSError) as error:
                outcomes[index] = error
                continue
            if probe.repair is not None:  # a file the PBX never finished: alone, repaired
                outcomes[index] = solo.run(job, solo_engine)
                continue
            shared.append((index, probe, metadata, temp_path_next_to(job.mp3)))
        if len(shared) == 1:
            index = shared[0][0]
            outcomes[index] = solo.run(jobs[index], solo_engine)
        elif shared:
            _run_shared(jobs, shared, outcomes, solo)
    finally:
        for _, _, _, tmp in shared:
            tmp.unlink(missing_ok=True)
    return [outcome if outcome is not None else TranscodeError("not run") for outcome in outcomes]


def _run_shared(
    jobs: Sequence[BatchJob],
    shared: list[_Shared],
    outcomes: list[Outcome | None],
    solo: _Solo,
) -> None:
    command = [solo.ffmpeg, *QUIET_NO_STDIN]
    for index, probe, _, _ in shared:
        command += input_args(probe, jobs[index].source)
    quality = lame_quality_args(solo.lame_quality)
    for stream, (_, _, metadata, tmp) in enumerate(shared):
        command += output_args(tmp, solo.bitrate, metadata, stream=stream, quality=quality)
    try:
        run_ffmpeg(command, timeout_s=solo.timeout_s * len(shared))
    except TranscodeError:
        # Which input broke it is unknown: each file alone, so the good ones still get through.
        for index, _, _, _ in shared:
            outcomes[index] = solo.run(jobs[index])
        return
    for index, probe, _, tmp in shared:
        try:
            outcomes[index] = finish_mp3(tmp, jobs[index].mp3, probe.info)
        except (TranscodeError, OSError):
            outcomes[index] = solo.run(jobs[index])


@dataclass(frozen=True)
class _Solo:
    """The encoder settings of one batch, to transcode one of its files alone."""

    ffmpeg: str
    bitrate: str
    timeout_s: float
    lame_quality: int | None

    def run(self, job: BatchJob, engine: Engine = "ffmpeg") -> Outcome:
        try:
            return transcode_to_mp3(
                job.source,
                job.mp3,
                ffmpeg=self.ffmpeg,
                bitrate=self.bitrate,
                tags=job.tags,
                engine=engine,
                timeout_s=self.timeout_s,
                lame_quality=self.lame_quality,
            )
        except (BadAudio, TranscodeError, ValueError, OSError) as error:
            return error


class BatchTranscoder:
    """Transcode `BatchJob`s for coroutines, up to `workers` batches at once in `executor`.

    A job that arrives while fewer than `workers` batches run starts one at once (alone, if
    nothing else waits); jobs that arrive while all run wait, and the next free worker takes the
    oldest ones together while the batch stays within `max_files` files and `max_audio_s`
    seconds of audio. So batching never delays a job, and a long file goes alone. No task
    outlives the work: a worker ends when nothing is waiting.

    `solo_engine` transcodes a job that runs alone because nothing else waits (no backlog):
    ``"pydub"`` there is the `engine = "auto"` policy, where pydub's extra ffmpeg run costs
    only idle CPU. Whatever waits behind it goes through the shared ffmpeg.
    """

    def __init__(
        self,
        executor: Executor,
        *,
        workers: int,
        ffmpeg: str,
        bitrate: str,
        max_files: int = 16,
        max_audio_s: float = 1200.0,
        timeout_s: float = 300.0,
        solo_engine: Engine = "ffmpeg",
        lame_quality: int | None = None,
    ) -> None:
        self._executor = executor
        self._lame_quality = lame_quality
        self._solo_engine: Engine = solo_engine
        self._workers = workers
        self._ffmpeg = ffmpeg
        self._bitrate = bitrate
        self._max_files = max_files
        self._max_audio_s = max_audio_s
        self._timeout_s = timeout_s
        self._pending: deque[_Queued] = deque()
        self._drains: set[asyncio.Task[None]] = set()

    async def transcode(self, job: BatchJob) -> TranscodeResult:
        """Transcode one job (batched with others); raise what `transcode_to_mp3` would."""
        future: asyncio.Future[TranscodeResult] = asyncio.get_running_loop().create_future()
        self._pending.append((job, future))
        if len(self._drains) < self._workers:
            task = asyncio.create_task(self._drain())
            self._drains.add(task)
            task.add_done_callback(self._reap)
        return await future

    def _reap(self, task: asyncio.Task[None]) -> None:
        """Drop an ended worker; a failure of its own (not a job's) is logged, never lost."""
        self._drains.discard(task)
        if not task.cancelled() and (error := task.exception()) is not None:
            log.error("transcode_worker_failed", reason=f"{type(error).__name__}: {error}")

    async def _drain(self) -> None:
        while self._pending:
            await self._run(self._take())

    def _take(self) -> list[_Queued]:
        batch = [self._pending.popleft()]
        audio_s = batch[0][0].audio_s
        while (
            self._pending
            and len(batch) < self._max_files
            and audio_s + self._pending[0][0].audio_s <= self._max_audio_s
        ):
            batch.append(self._pending.popleft())
            audio_s += batch[-1][0].audio_s
        return batch

    async def _run(self, batch: list[_Queued]) -> None:
        live = [(job, future) for job, future in batch if not future.done()]
        if not live:
            return
        jobs = [job for job, _ in live]
        # Alone with nothing queued behind it: no backlog, so the solo engine; a lone job
        # taken from a queue (max_files = 1) is backlog and goes through ffmpeg.
        solo: Engine = self._solo_engine if not self._pending else "ffmpeg"
        try:
            outcomes = await asyncio.get_running_loop().run_in_executor(
                self._executor,
                lambda: transcode_batch(
                    jobs,
                    ffmpeg=self._ffmpeg,
                    bitrate=self._bitrate,
                    timeout_s=self._timeout_s,
                    solo_engine=solo,
                    lame_quality=self._lame_quality,
                ),
            )
        except asyncio.CancelledError:
            for _, future in live:
                future.cancel()
            raise
        except Exception as error:  # the executor shut down, say: this batch's callers get it
            for _, future in live:
                if not future.done():
                    future.set_exception(error)
            return  # and the worker goes on with the queue, so no waiting job hangs
        for (_, future), outcome in zip(live, outcomes, strict=True):
            if future.done():  # its caller was cancelled meanwhile
                continue
            if isinstance(outcome, BaseException):
                future.set_exception(outcome)
            else:
                future.set_result(outcome)
