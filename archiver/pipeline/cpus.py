"""How many CPUs this process may actually use: its affinity, capped by a cgroup CPU quota.

`os.cpu_count()` counts the machine's CPUs. Under `taskset -c 0` (affinity) or systemd's
`CPUQuota=50%` (cgroup v2 `cpu.max`: "50000 100000"), the process gets one core or half of one, and
a worker per machine CPU only makes the transcoders queue for the same core while each holds a
source file and a decoder's memory. `usable_cpus` is what `transcode.workers` defaults to.

A quota is rounded up (150 % is two workers, 50 % is one): the workers then keep the whole quota
busy, and the kernel's throttling, not an idle worker, is what bounds them. The quota is the
smallest found on the way from the process's cgroup up to the root, as the kernel applies every
ancestor's limit.
"""

from __future__ import annotations

import contextlib
import math
import os
import threading
from collections.abc import Iterator
from pathlib import Path

__all__ = ["CpuPinner", "affinity_cpus", "cgroup_cpu_quota", "usable_cpus"]

_PROC_CGROUP = Path("/proc/self/cgroup")
_CGROUP_V2_ROOT = Path("/sys/fs/cgroup")
# cgroup v1 (and hybrid hosts): the cpu controller's own hierarchy.
_CGROUP_V1_CPU_ROOTS = (Path("/sys/fs/cgroup/cpu"), Path("/sys/fs/cgroup/cpu,cpuacct"))


def affinity_cpus() -> int:
    """The CPUs the scheduler may run this process on (`taskset`, systemd's `CPUAffinity=`)."""
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):  # not Linux
        return os.cpu_count() or 1


def cgroup_cpu_quota(
    proc_cgroup: Path = _PROC_CGROUP,
    v2_root: Path = _CGROUP_V2_ROOT,
    v1_roots: tuple[Path, ...] = _CGROUP_V1_CPU_ROOTS,
) -> float | None:
    """The CPU quota of this process's cgroup in CPUs (1.5 = 150 %), or None when unlimited or
    unreadable. Reads cgroup v2 `cpu.max` ("QUOTA PERIOD" or "max PERIOD") and cgroup v1
    `cpu.cfs_quota_us` / `cpu.cfs_period_us` (-1 = unlimited), from the process's own cgroup up
    to the hierarchy's root; the smallest quota wins."""
    try:
        lines = proc_cgroup.read_text(encoding="utf-8").splitlines()
    except OSError:
        return None
    quotas: list[float] = []
    for line in lines:
        _, controllers, path = line.split(":", 2) if line.count(":") >= 2 else ("", "", "")
        if not path.startswith("/"):
            continue
        if controllers == "":  # the v2 unified hierarchy: "0::/system.slice/archiver.service"
            quotas += _v2_quotas(v2_root, path)
        elif "cpu" in controllers.split(","):
            for root in v1_roots:
                quotas += _v1_quotas(root, path)
    return min(quotas) if quotas else None


def usable_cpus() -> int:
    """CPUs this process may use: its affinity, lowered to a cgroup quota rounded up; >= 1."""
    cpus = affinity_cpus()
    quota = cgroup_cpu_quota()
    if quota is not None:
        cpus = min(cpus, max(1, math.ceil(quota)))
    return max(1, cpus)


class CpuPinner:
    """Gives each transcoding thread a CPU of its own, when there is exactly one per thread.

    ffmpeg 5 runs one thread per input file, so a batch (several recordings in one ffmpeg) hands
    packets between threads; free to run on two cores, those hand-offs cost it 15-25 % more CPU
    than on one (the same batch under `taskset -c 0` and `-c 0,1`; README "Speed"). A thread's
    CPU mask is inherited by the processes it starts, so a transcoding thread pinned to one CPU
    runs its ffmpeg (and every thread ffmpeg starts) there. Pinning is used only when the workers
    are exactly the CPUs the process may run on (the default workers, no lower cgroup quota):
    with fewer workers than CPUs, or a quota, a pinned ffmpeg could wait behind a busy core
    while another sits idle.
    """

    def __init__(self, workers: int) -> None:
        # One worker per CPU of the affinity, and no quota lowers that count (`usable_cpus`).
        exact = workers > 1 and affinity_cpus() == usable_cpus() == workers
        exact = exact and hasattr(os, "sched_getaffinity")  # not Linux: nothing to pin
        self.cpus: list[int] = sorted(os.sched_getaffinity(0)) if exact else []
        self._next = 0
        self._lock = threading.Lock()

    def pin_this_thread(self) -> None:
        """A ThreadPoolExecutor initializer: pin the calling thread to the next CPU in turn."""
        if not self.cpus:
            return
        with self._lock:
            cpu = self.cpus[self._next % len(self.cpus)]
            self._next += 1
        with contextlib.suppress(OSError):  # a CPU taken away since: leave the thread free
            os.sched_setaffinity(0, {cpu})


def _ancestors(root: Path, path: str) -> Iterator[Path]:
    """`root/path`, then each parent folder up to and including `root`."""
    folder = root.joinpath(*[part for part in path.split("/") if part])
    while True:
        yield folder
        if folder == root or root not in folder.parents:
            return
        folder = folder.parent


def _v2_quotas(root: Path, path: str) -> list[float]:
    quotas = []
    for folder in _ancestors(root, path):
        try:
            quota, _, period = (folder / "cpu.max").read_text(encoding="utf-8").partition(" ")
        except OSError:
            continue
        if quota.strip() != "max" and period.strip():
            quotas.append(_ratio(quota, period))
    return [q for q in quotas if q > 0]


def _v1_quotas(root: Path, path: str) -> list[float]:
    quotas = []
    for folder in _ancestors(root, path):
        try:
            quota = (folder / "cpu.cfs_quota_us").read_text(encoding="utf-8")
            period = (folder / "cpu.cfs_period_us").read_text(encoding="utf-8")
        except OSError:
            continue
        if quota.strip() != "-1":
            quotas.append(_ratio(quota, period))
    return [q for q in quotas if q > 0]


def _ratio(quota: str, period: str) -> float:
    try:
        return int(quota.strip()) / int(period.strip())
    except (ValueError, ZeroDivisionError):
        return 0.0  # unreadable: ignored by the callers, as if unlimited
