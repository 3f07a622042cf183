"""Transcode one call recording (raw GSM, GSM-in-WAV or PCM WAV) to a verified MP3.

The stage knows files and codecs only: not S3, not the PBX. `probe` decides by content what a
source holds and how long it plays (`BadAudio` if it is unusable); `encode` turns one source
into a checked MP3 (`TranscodeError` if ffmpeg fails or the MP3 does not check out); `batch`
runs several short sources through one ffmpeg, each still checked on its own.

The rest of the pipeline imports from here, not from the modules inside.
"""

from archiver.pipeline.transcode.batch import BatchJob, BatchTranscoder, transcode_batch
from archiver.pipeline.transcode.encode import (
    Engine,
    FfmpegNotFound,
    TranscodeError,
    TranscodeResult,
    find_ffmpeg,
    transcode_to_mp3,
)
from archiver.pipeline.transcode.probe import BadAudio, SourceFormat, SourceInfo, probe_source

__all__ = [
    "BadAudio",
    "BatchJob",
    "BatchTranscoder",
    "Engine",
    "FfmpegNotFound",
    "SourceFormat",
    "SourceInfo",
    "TranscodeError",
    "TranscodeResult",
    "find_ffmpeg",
    "probe_source",
    "transcode_batch",
    "transcode_to_mp3",
]
