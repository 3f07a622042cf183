"""archiver: archive PBX call recordings to S3 as verified MP3, exactly once."""

__version__ = "0.1.0"
