"""The daemon's thread pools: transcoding (one thread per worker, with the batcher that lets
queued recordings share ffmpeg processes) and uploading (one thread per concurrent upload)."""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from archiver.config import Config
from archiver.names import Recording
from archiver.pipeline.cpus import CpuPinner, usable_cpus
from archiver.pipeline.transcode import BatchJob, BatchTranscoder, TranscodeResult, transcode_to_mp3
from archiver.pipeline.work import id3_tags, transcode_limit_s
from archiver.s3 import StoredObject

__all__ = ["Workers", "max_in_flight"]


def max_in_flight(cfg: Config) -> int:
    """How many recordings may be between download and upload at once (each holds a source
    and an MP3 in the work folder): enough to keep every core and connection busy, few enough
    that work files stay bounded. Batching needs a full batch waiting per worker while the
    workers run theirs."""
    settings = cfg.transcode
    batch_files = settings.batch_files if settings.engine != "pydub" else 1
    workers = settings.workers or usable_cpus()
    per_pbx = sum(pbx.max_concurrent_requests for pbx in cfg.pbx)
    uploads = cfg.s3.max_concurrent_uploads
    return (batch_files + 1) * workers + per_pbx + uploads


class Workers:
    """Transcoding and upload threads for one Archiver; `close` waits for them."""

    def __init__(self, cfg: Config, ffmpeg: str) -> None:
        settings = cfg.transcode
        self.ffmpeg = ffmpeg
        self.bitrate = settings.bitrate
        self.lame_quality = settings.lame_quality
        self.transcode_workers = settings.workers or usable_cpus()
        self.pinner = CpuPinner(self.transcode_workers)
        self._transcoders = ThreadPoolExecutor(
            self.transcode_workers,
            thread_name_prefix="transcode",
            initializer=self.pinner.pin_this_thread,
        )
        self._uploaders = ThreadPoolExecutor(
            cfg.s3.max_concurrent_uploads, thread_name_prefix="upload"
        )
        # "auto": a recording that finds a transcoder idle goes through pydub alone; those that
        # queue behind busy transcoders share ffmpeg processes (transcode/batch.py).
        self._batcher = (
            BatchTranscoder(
                self._transcoders,
                workers=self.transcode_workers,
                ffmpeg=ffmpeg,
                bitrate=settings.bitrate,
                max_files=settings.batch_files,
                solo_engine="pydub" if settings.engine == "auto" else "ffmpeg",
                lame_quality=settings.lame_quality,
            )
            if settings.engine != "pydub"
            else None
        )

    async def transcode(self, rec: Recording, source: Path, mp3: Path) -> TranscodeResult:
        """`source` to `mp3` with `rec`'s tags, within `transcode_limit_s`; raise what
        `transcode_to_mp3` raises (TranscodeError, BadAudio)."""
        tags = id3_tags(rec)
        if self._batcher is not None:
            return await self._batcher.transcode(BatchJob(source, mp3, tags, float(rec.duration_s)))
        job = functools.partial(
            transcode_to_mp3,
            source,
            mp3,
            ffmpeg=self.ffmpeg,
            bitrate=self.bitrate,
            tags=tags,
            engine="pydub",  # no batcher: engine = "pydub" was configured
            timeout_s=transcode_limit_s(rec),
            lame_quality=self.lame_quality,
        )
        return await asyncio.get_running_loop().run_in_executor(self._transcoders, job)

    async def upload(self, put: Callable[[], StoredObject]) -> StoredObject:
        """Run the blocking S3 `put` on an upload thread."""
        return await asyncio.get_running_loop().run_in_executor(self._uploaders, put)

    def close(self) -> None:
        """Wait for the threads (so no work file appears after)."""
        self._transcoders.shutdown(wait=True, cancel_futures=True)
        self._uploaders.shutdown(wait=True, cancel_futures=True)
