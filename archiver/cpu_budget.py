"""Where the daemon's CPU goes per recording, by stage: measured for `scripts/bench` only.

Off unless the environment names a file in `ARCHIVER_CPU_BUDGET` (the bench sets it); then
`install` wraps, for this process only, the places every stage's CPU passes through, and at exit
writes what it counted there as JSON (`Budget.as_dict`). Nothing in the product reads it, and
when it is off the only cost left on the hot path is `mark`'s test of one module-level flag.

How each stage's CPU is caught (thread CPU time, `time.thread_time`, so a stage running on one
thread never counts another's; nested sections count once, in the innermost):

- the event loop: every callback (`asyncio.Handle._run`: a task's step, a socket read) counts
  toward the stage its context was in (`mark` sets it per recording: download, transcode,
  upload); a socket's reads count toward the stage of the task that opened the connection.
- thread pools: a job counts toward its pool's stage (`transcode-*` threads: transcode,
  `upload-*`: upload, `state-*`: state), else (asyncio's default pool: aiofiles' writes,
  `to_thread`) toward the stage of the task that submitted it.
- hashing (`hashlib.sha256`/`md5` objects' `update`, wherever they run: the download's SHA-256,
  the MP3's MD5, botocore's payload hash and request-signing HMACs, which this wrapping sends
  down hmac's slower pure-Python path: an overstatement of a few microseconds per request),
  logging (structlog's emitted events, the standard library's handled records): their own
  stages, taken out of the stage they ran inside.
- ffmpeg: the children's CPU (`getrusage(RUSAGE_CHILDREN)`, every waited-for child), and how
  many ffmpeg processes were started; S3 requests are counted by operation (PutObject,
  HeadObject).

What no stage caught (interpreter start, imports, the garbage collector's share that fell
outside a section, threads not listed) is the process's total minus the stages: `unattributed`.
"""

from __future__ import annotations

import asyncio
import atexit
import concurrent.futures
import contextlib
import contextvars
import hashlib
import json
import logging
import os
import resource
import subprocess
import sys
import threading
import time
from collections import Counter, defaultdict
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, Final

__all__ = ["ENV", "STAGES", "Budget", "install", "mark"]

ENV: Final = "ARCHIVER_CPU_BUDGET"
# The stages reported, in the order the bench prints them.
STAGES: Final = ("download", "hashing", "transcode", "upload", "state", "logging", "other")
# A thread pool's stage by its threads' name prefix (Workers', StateThreads').
_POOL_STAGES: Final = (("transcode", "transcode"), ("upload", "upload"), ("state-", "state"))

_ACTIVE = False
_STAGE: contextvars.ContextVar[str] = contextvars.ContextVar("archiver_cpu_stage", default="other")


def mark(stage: str) -> None:
    """From here on, the calling task's CPU counts toward `stage` (a no-op unless installed)."""
    if _ACTIVE:
        _STAGE.set(stage)


class Budget:
    """CPU seconds per stage, exclusive of nested sections; thread-safe."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._cpu_s: defaultdict[str, float] = defaultdict(float)
        self.counts: Counter[str] = Counter()  # ffmpeg starts, S3 operations
        self._local = threading.local()

    @contextlib.contextmanager
    def section(self, stage: str | Callable[[], str]) -> Iterator[None]:
        """Count this thread's CPU inside the block toward `stage` (a callable: decided at the
        end), minus what nested sections counted."""
        stack: list[float] = self._local.__dict__.setdefault("stack", [])
        stack.append(0.0)  # CPU of nested sections so far
        started = time.thread_time()
        try:
            yield
        finally:
            spent = time.thread_time() - started
            nested = stack.pop()
            if stack:
                stack[-1] += spent
            name = stage() if callable(stage) else stage
            with self._lock:
                self._cpu_s[name] += spent - nested

    def count(self, what: str) -> None:
        with self._lock:
            self.counts[what] += 1

    def as_dict(self) -> dict[str, Any]:
        own = resource.getrusage(resource.RUSAGE_SELF)
        children = resource.getrusage(resource.RUSAGE_CHILDREN)
        with self._lock:
            stages = {stage: self._cpu_s.get(stage, 0.0) for stage in STAGES}
            stages.update(self._cpu_s)
            counts = dict(self.counts)
        process_s = own.ru_utime + own.ru_stime
        return {
            "stages_cpu_s": stages,
            "process_cpu_s": process_s,
            "unattributed_cpu_s": process_s - sum(stages.values()),
            "children_cpu_s": children.ru_utime + children.ru_stime,
            "counts": counts,
        }


def install(path: Path) -> Budget:
    """Start counting in this process; write the budget to `path` at exit."""
    global _ACTIVE
    budget = Budget()
    _wrap_loop(budget)
    _wrap_pools(budget)
    _wrap_hashes(budget)
    _wrap_logging(budget)
    _count_processes(budget)
    _count_s3(budget)
    _ACTIVE = True
    atexit.register(lambda: path.write_text(json.dumps(budget.as_dict(), indent=1) + "\n"))
    return budget


def install_from_env() -> Budget | None:
    """`install` if `ARCHIVER_CPU_BUDGET` names a file."""
    where = os.environ.get(ENV)
    return install(Path(where)) if where else None


def _wrap_loop(budget: Budget) -> None:
    run = asyncio.Handle._run

    def metered(handle: asyncio.Handle) -> None:
        context: contextvars.Context = handle._context  # type: ignore[attr-defined]
        with budget.section(lambda: context.get(_STAGE, "other")):
            run(handle)

    asyncio.Handle._run = metered  # type: ignore[method-assign,assignment]


def _wrap_pools(budget: Budget) -> None:
    submit = concurrent.futures.ThreadPoolExecutor.submit

    def metered(
        pool: concurrent.futures.ThreadPoolExecutor, fn: Callable[..., Any], /, *a: Any, **k: Any
    ) -> concurrent.futures.Future[Any]:
        prefix = getattr(pool, "_thread_name_prefix", "")
        stage = next((s for p, s in _POOL_STAGES if prefix.startswith(p)), None)
        stage = stage or _STAGE.get()

        def job() -> Any:
            with budget.section(stage):
                return fn(*a, **k)

        return submit(pool, job)

    concurrent.futures.ThreadPoolExecutor.submit = metered  # type: ignore[method-assign,assignment]


class _MeteredHash:
    """A hashlib object whose `update` counts toward hashing."""

    def __init__(self, inner: Any, budget: Budget) -> None:
        self._inner = inner
        self._budget = budget

    def update(self, data: Any) -> None:
        with self._budget.section("hashing"):
            self._inner.update(data)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)

    def copy(self) -> _MeteredHash:
        return _MeteredHash(self._inner.copy(), self._budget)


def _wrap_hashes(budget: Budget) -> None:
    for name in ("sha256", "md5"):
        make = getattr(hashlib, name)

        def metered(*args: Any, _make: Any = make, **kwargs: Any) -> _MeteredHash:
            with budget.section("hashing"):  # the constructor hashes its argument at once
                return _MeteredHash(_make(*args, **kwargs), budget)

        setattr(hashlib, name, metered)
        # botocore took its own reference at import (`from hashlib import sha256`): the SigV4
        # payload hash of every PUT over http, and the HMACs of every request's signature.
        for module in ("botocore.auth", "botocore.httpchecksum"):
            loaded = sys.modules.get(module)
            if loaded is not None and getattr(loaded, name, None) is make:
                setattr(loaded, name, metered)


def _wrap_logging(budget: Budget) -> None:
    import structlog

    proxy = structlog.BoundLoggerBase._proxy_to_logger

    def metered_proxy(self: Any, *args: Any, **kwargs: Any) -> Any:
        with budget.section("logging"):
            return proxy(self, *args, **kwargs)

    structlog.BoundLoggerBase._proxy_to_logger = metered_proxy  # type: ignore[method-assign]
    handle = logging.Logger.handle

    def metered_handle(self: logging.Logger, record: logging.LogRecord) -> None:
        with budget.section("logging"):
            handle(self, record)

    logging.Logger.handle = metered_handle  # type: ignore[method-assign]


def _count_processes(budget: Budget) -> None:
    init = subprocess.Popen.__init__

    def counted(self: subprocess.Popen[Any], args: Any, *rest: Any, **kwargs: Any) -> None:
        program = args[0] if isinstance(args, list | tuple) and args else args
        budget.count(f"process:{Path(str(program)).name}")
        init(self, args, *rest, **kwargs)

    subprocess.Popen.__init__ = counted  # type: ignore[method-assign]


def _count_s3(budget: Budget) -> None:
    from botocore.client import BaseClient

    call = BaseClient._make_api_call  # type: ignore[attr-defined]

    def counted(self: BaseClient, operation: str, params: Any) -> Any:
        budget.count(f"s3:{operation}")
        return call(self, operation, params)

    BaseClient._make_api_call = counted  # type: ignore[attr-defined]
