"""The work folder: where downloads and MP3s live until they are stored.

Several processes may share one state (`archiver run` and an `archiver backfill` next to it), so
each claims a folder of its own under `[state] work_dir`, `proc-<pid>-<random>`, and holds an
exclusive `flock` on the `.lock` file in it for as long as it lives (the kernel drops the lock
when the process dies, even by SIGKILL). At start, a process sweeps only what is provably stale:
folders whose lock nobody holds. And it deletes only files named as this program's work files
(`<token>.src`, `<token>.src.part`, `<token>.mp3`, `.<token>.mp3.<random>.part`, and pydub's
`.pydub-<random>` scratch folders): whatever else a
careless `work_dir` points at (the ledger, its WAL, an admin's files) is never touched.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import re
import secrets
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Final

from archiver.config import work_dir_problem

__all__ = ["WorkDir", "WorkDirRefused", "is_work_file", "sweep"]

_WORK_FILE_RE: Final = re.compile(
    r"[0-9a-f]{24}\.(src|src\.part|mp3)|\.[0-9a-f]{24}\.mp3\.[A-Za-z0-9_]{1,32}\.part"
)
# pydub's scratch directory for one transcode (archiver.pipeline.transcode.encode), left behind
# by a transcode that was killed: ours too, removed whole.
_SCRATCH_DIR_RE: Final = re.compile(r"\.pydub-[A-Za-z0-9_]{1,32}")
_PROCESS_DIR_RE: Final = re.compile(r"proc-[0-9]{1,10}-[0-9a-f]{8}")
_LOCK_NAME: Final = ".lock"
_BIRTH_S: Final = 60.0


class WorkDirRefused(Exception):
    """`work_dir` points somewhere it must not (the state's folder, a system folder)."""


def is_work_file(name: str) -> bool:
    """True if `name` is one of the names this program gives its work files."""
    return _WORK_FILE_RE.fullmatch(name) is not None


@dataclass
class WorkDir:
    """This process's own work folder, locked while it lives. `claim` it, `release` at exit."""

    root: Path
    path: Path
    _lock_fd: int = field(repr=False)

    @classmethod
    def claim(cls, root: Path, state_path: Path) -> tuple[WorkDir, int]:
        """Sweep stale work under `root`, then make and lock this process's folder in it.
        Return it and how many stale files were removed. Raise `WorkDirRefused` for a root
        that `work_dir_problem` rejects (checked again here: symlinks may have changed)."""
        reason = work_dir_problem(root, state_path)
        if reason is not None:
            raise WorkDirRefused(reason)
        root.mkdir(parents=True, exist_ok=True, mode=0o700)
        removed = sweep(root)
        path = root / f"proc-{os.getpid()}-{secrets.token_hex(4)}"
        path.mkdir(mode=0o700)
        fd = os.open(path / _LOCK_NAME, os.O_CREAT | os.O_RDWR | os.O_CLOEXEC, 0o600)
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)  # new and ours: cannot be held
        return cls(root=root, path=path, _lock_fd=fd), removed

    def clear(self) -> int:
        """Delete this process's work files (the folder stays); return how many."""
        return _remove_work_files(self.path)

    def release(self) -> None:
        """Delete this process's work files and its folder, and drop the lock."""
        self.clear()
        with contextlib.suppress(FileNotFoundError):
            (self.path / _LOCK_NAME).unlink()
        with contextlib.suppress(OSError):  # not empty: someone put a file there; leave it
            self.path.rmdir()
        os.close(self._lock_fd)


def sweep(root: Path) -> int:
    """Remove what earlier lives left under `root`: the work files of process folders whose
    lock nobody holds (and those folders), and work files lying in `root` itself (the layout
    before per-process folders). Return how many files were removed."""
    removed = _remove_work_files(root)
    for entry in root.iterdir():
        if entry.is_dir() and not entry.is_symlink() and _PROCESS_DIR_RE.fullmatch(entry.name):
            removed += _sweep_process_dir(entry)
    return removed


def _sweep_process_dir(folder: Path) -> int:
    lock = folder / _LOCK_NAME
    try:
        fd = os.open(lock, os.O_RDWR | os.O_CLOEXEC)
    except FileNotFoundError:
        # Its owner is leaving, died between mkdir and locking, or is being born right now:
        # only an old folder is stale.
        if time.time() - folder.stat().st_mtime < _BIRTH_S:
            return 0
        fd = None
    except OSError:
        return 0
    try:
        if fd is not None:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                return 0  # a live process: its files are its own
        removed = _remove_work_files(folder)
        with contextlib.suppress(FileNotFoundError):
            lock.unlink()
        with contextlib.suppress(OSError):
            folder.rmdir()
        return removed
    finally:
        if fd is not None:
            os.close(fd)


def _remove_work_files(folder: Path) -> int:
    removed = 0
    for entry in folder.iterdir():
        if is_work_file(entry.name) and (entry.is_file() or entry.is_symlink()):
            entry.unlink(missing_ok=True)
            removed += 1
        elif _SCRATCH_DIR_RE.fullmatch(entry.name) and entry.is_dir() and not entry.is_symlink():
            shutil.rmtree(entry, ignore_errors=True)
            removed += 1
    return removed
