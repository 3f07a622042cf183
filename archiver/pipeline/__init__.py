"""The archiving pipeline: list, download, transcode, upload, record. `daemon` alone knows the
order of the stages; `runner` runs it once, as a backfill or until stopped (the loop and the
shutdown policy); reconcile rebuilds the ledger from the bucket.

Other parts import from here, not from the modules inside.
"""

from archiver.pipeline.daemon import Archiver, max_in_flight
from archiver.pipeline.listing import ParsedListing, parse_listing
from archiver.pipeline.reconcile import ReconcileReport, reconcile
from archiver.pipeline.report import PollReport
from archiver.pipeline.runner import (
    Ending,
    archive_until_signalled,
    open_archiver,
    poll_ticks,
    serve,
    store_ready,
    until_signalled,
)
from archiver.pipeline.transcode import FfmpegNotFound, find_ffmpeg
from archiver.pipeline.workdir import WorkDirRefused

__all__ = [
    "Archiver",
    "Ending",
    "FfmpegNotFound",
    "ParsedListing",
    "PollReport",
    "ReconcileReport",
    "WorkDirRefused",
    "archive_until_signalled",
    "find_ffmpeg",
    "max_in_flight",
    "open_archiver",
    "parse_listing",
    "poll_ticks",
    "reconcile",
    "serve",
    "store_ready",
    "until_signalled",
]
