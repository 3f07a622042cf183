"""The archiving pipeline: list, download, transcode, upload, record. `daemon` alone knows the
order of the stages; reconcile rebuilds the ledger from the bucket.

Other parts import from here, not from the modules inside.
"""

from archiver.pipeline.daemon import Archiver, PollReport, clear_work_dir, poll_ticks
from archiver.pipeline.reconcile import ReconcileReport, reconcile
from archiver.pipeline.transcode import FfmpegNotFound, find_ffmpeg

__all__ = [
    "Archiver",
    "FfmpegNotFound",
    "PollReport",
    "ReconcileReport",
    "clear_work_dir",
    "find_ffmpeg",
    "poll_ticks",
    "reconcile",
]
