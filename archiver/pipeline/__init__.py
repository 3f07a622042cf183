"""The archiving pipeline: list, download, transcode, upload, record. `days` says what one day
of one PBX holds that is due (`list_day`, shared with `backfill --dry-run` in `plan`);
`daemon` plans the days and bounds the concurrency; `recording` knows one recording's stages,
`retries` retries them, `lease` holds a recording against other workers; `runner` runs it
once, as a backfill or until stopped (the loop and the shutdown policy); reconcile rebuilds
the ledger from the bucket.

Other parts import from here, not from the modules inside.
"""

from archiver.pipeline.daemon import Archiver, max_in_flight
from archiver.pipeline.days import DayListing, DueRules, list_day
from archiver.pipeline.listing import ParsedListing, parse_listing
from archiver.pipeline.plan import dry_run
from archiver.pipeline.rebuild import ReconcileReport, reconcile
from archiver.pipeline.recording import RecordingWork
from archiver.pipeline.report import Outcome, PollReport
from archiver.pipeline.retries import Retrier, install_retry_log
from archiver.pipeline.runner import (
    Ending,
    archive_until_signalled,
    open_archiver,
    poll_ticks,
    serve,
    store_ready,
    until_signalled,
)
from archiver.pipeline.transcode import (
    BadAudio,
    Engine,
    FfmpegNotFound,
    TranscodeError,
    find_ffmpeg,
    transcode_to_mp3,
)
from archiver.pipeline.workdir import WorkDirRefused

__all__ = [
    "Archiver",
    "BadAudio",
    "DayListing",
    "DueRules",
    "Ending",
    "Engine",
    "FfmpegNotFound",
    "Outcome",
    "ParsedListing",
    "PollReport",
    "ReconcileReport",
    "RecordingWork",
    "Retrier",
    "TranscodeError",
    "WorkDirRefused",
    "archive_until_signalled",
    "dry_run",
    "find_ffmpeg",
    "install_retry_log",
    "list_day",
    "max_in_flight",
    "open_archiver",
    "parse_listing",
    "poll_ticks",
    "reconcile",
    "serve",
    "store_ready",
    "transcode_to_mp3",
    "until_signalled",
]
