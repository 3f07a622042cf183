"""archiver: archive PBX call recordings to S3 as verified MP3, exactly once."""

from importlib.metadata import PackageNotFoundError, version

try:
    # Set at install time from git (hatch-vcs, see pyproject.toml): tells what is installed.
    __version__ = version("archiver")
except PackageNotFoundError:  # run from a source tree that was never installed
    __version__ = "0.0.0"
