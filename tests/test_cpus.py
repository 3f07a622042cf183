"""The default worker count follows the CPUs this process may use, not the machine's."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from archiver.pipeline.cpus import cgroup_cpu_quota


def _cgroup_tree(root: Path, files: dict[str, str]) -> None:
    for relative, text in files.items():
        path = root / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)


def test_under_taskset_one_cpu_is_one_worker() -> None:
    code = (
        "from archiver.config import TranscodeConfig\n"
        "from archiver.pipeline.cpus import usable_cpus\n"
        "print(usable_cpus(), TranscodeConfig().workers)"
    )
    done = subprocess.run(
        ["taskset", "-c", "0", sys.executable, "-c", code],
        capture_output=True, text=True, check=True,
    )  # fmt: skip
    assert done.stdout.split() == ["1", "None"]


def test_cgroup_v2_quota_is_read_up_to_the_root(tmp_path: Path) -> None:
    proc = tmp_path / "proc-cgroup"
    proc.write_text("0::/system.slice/archiver.service\n")
    root = tmp_path / "v2"
    _cgroup_tree(
        root,
        {
            "cpu.max": "max 100000\n",
            "system.slice/cpu.max": "300000 100000\n",
            "system.slice/archiver.service/cpu.max": "150000 100000\n",
        },
    )
    assert cgroup_cpu_quota(proc, root, ()) == 1.5
    # A parent's smaller quota binds the child too.
    (root / "system.slice/cpu.max").write_text("50000 100000\n")
    assert cgroup_cpu_quota(proc, root, ()) == 0.5


def test_no_quota_means_none(tmp_path: Path) -> None:
    proc = tmp_path / "proc-cgroup"
    proc.write_text("0::/user.slice\n")
    root = tmp_path / "v2"
    _cgroup_tree(root, {"cpu.max": "max 100000\n", "user.slice/cpu.max": "max 100000\n"})
    assert cgroup_cpu_quota(proc, root, ()) is None
    assert cgroup_cpu_quota(tmp_path / "missing", root, ()) is None


def test_cgroup_v1_cfs_quota(tmp_path: Path) -> None:
    proc = tmp_path / "proc-cgroup"
    proc.write_text("4:memory:/x\n3:cpu,cpuacct:/docker/abc\n0::/\n")
    v1 = tmp_path / "cpu,cpuacct"
    _cgroup_tree(
        v1,
        {
            "docker/abc/cpu.cfs_quota_us": "200000\n",
            "docker/abc/cpu.cfs_period_us": "100000\n",
            "cpu.cfs_quota_us": "-1\n",
            "cpu.cfs_period_us": "100000\n",
        },
    )
    assert cgroup_cpu_quota(proc, tmp_path / "no-v2", (v1,)) == 2.0


_PINNED = """
import json, subprocess, sys
from concurrent.futures import ThreadPoolExecutor
from archiver.pipeline.cpus import CpuPinner

workers = int(sys.argv[1])
pinner = CpuPinner(workers)
pool = ThreadPoolExecutor(workers, initializer=pinner.pin_this_thread)

def child_cpus() -> str:  # what a process started by this thread (ffmpeg) may run on
    status = subprocess.run(["cat", "/proc/self/status"], capture_output=True, text=True).stdout
    lines = [line for line in status.splitlines() if line.startswith("Cpus_allowed_list")]
    return lines[0].split(":")[1].strip()

print(json.dumps(sorted({f.result() for f in [pool.submit(child_cpus) for _ in range(8)]})))
"""


def _children_cpus(cpus: str, workers: int) -> list[str]:
    done = subprocess.run(
        ["taskset", "-c", cpus, sys.executable, "-c", _PINNED, str(workers)],
        capture_output=True, text=True, check=True, timeout=60,
    )  # fmt: skip
    answer: list[str] = json.loads(done.stdout)
    return answer


def test_one_transcoder_per_cpu_runs_its_ffmpeg_on_its_own_cpu() -> None:
    # Two workers on two CPUs: each thread's children run on one CPU, the two threads on both.
    assert _children_cpus("0,1", 2) == ["0", "1"]


def test_no_pinning_with_fewer_workers_than_cpus_or_one_cpu() -> None:
    assert _children_cpus("0,1", 1) == ["0-1"]  # one worker, two CPUs: free to move
    assert _children_cpus("0", 1) == ["0"]  # the process's own mask, nothing added


_DAEMON = """
import json, os, subprocess
from archiver.config import parse_config
from archiver.pipeline.workers import Workers

document = {
    "pbx": {"url": "https://pbx.example:9999", "username": "u", "password": "hunter2secret"},
    "s3": {"bucket": "recordings"},
}
workers = Workers(parse_config(document, "test"), "ffmpeg")
try:
    print(json.dumps([workers.transcode_workers, workers.pinner.cpus]))
finally:
    workers.close()
"""


def test_the_daemons_default_transcoders_are_pinned_one_per_cpu() -> None:
    done = subprocess.run(
        ["taskset", "-c", "0,1", sys.executable, "-c", _DAEMON],
        capture_output=True, text=True, check=True, timeout=60,
    )  # fmt: skip
    assert json.loads(done.stdout) == [2, [0, 1]]
