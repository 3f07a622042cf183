"""A time limit for pydub, which starts ffmpeg itself and offers no timeout.

pydub calls `subprocess.Popen` through its module's `subprocess` name and then `communicate()`
without a timeout: a stuck or pathologically slow ffmpeg would hold a transcode thread (and the
decoded audio in memory) for ever. `install()` gives pydub a `subprocess` whose `Popen` notes each
child in the calling thread's current `killed_after` block; when the block's time is up a timer
kills them, pydub's `communicate()` returns, and pydub raises its usual decode/encode error,
which the caller turns into "ran longer than N s and was killed" (`Watch.expired`).

Only pydub's module is touched, and only its `Popen`; every other name is the real module's.
"""

from __future__ import annotations

import contextlib
import subprocess
import threading
import types
from collections.abc import Iterator
from typing import Any

__all__ = ["Watch", "install", "killed_after"]

_local = threading.local()


class Watch:
    """The children started in one `killed_after` block, and whether its time ran out."""

    def __init__(self) -> None:
        self.expired = False
        self._children: list[subprocess.Popen[Any]] = []
        self._lock = threading.Lock()

    def add(self, child: subprocess.Popen[Any]) -> None:
        with self._lock:
            self._children.append(child)
            late = self.expired
        if late:
            child.kill()

    def expire(self) -> None:
        with self._lock:
            self.expired = True
            children = list(self._children)
        for child in children:
            if child.poll() is None:
                child.kill()


class _WatchedPopen(subprocess.Popen):  # type: ignore[type-arg]
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        watch: Watch | None = getattr(_local, "watch", None)
        if watch is not None:
            watch.add(self)


def install(module: types.ModuleType) -> None:
    """Give `module` (pydub.audio_segment) a `subprocess` whose Popen is watched. Idempotent."""
    current = getattr(module, "subprocess", None)
    if isinstance(current, types.ModuleType) and current is not subprocess:
        return  # already installed
    proxy = types.ModuleType("subprocess")
    proxy.__dict__.update(subprocess.__dict__)
    proxy.Popen = _WatchedPopen  # type: ignore[attr-defined]
    module.subprocess = proxy  # type: ignore[attr-defined]


@contextlib.contextmanager
def killed_after(timeout_s: float) -> Iterator[Watch]:
    """Within the block, every child pydub starts in this thread is killed once `timeout_s` has
    passed since the block began. Read `Watch.expired` to tell a kill from a real failure."""
    watch = Watch()
    previous = getattr(_local, "watch", None)
    _local.watch = watch
    timer = threading.Timer(timeout_s, watch.expire)
    timer.daemon = True
    timer.start()
    try:
        yield watch
    finally:
        timer.cancel()
        _local.watch = previous
