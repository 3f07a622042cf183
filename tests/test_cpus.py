"""The default worker count follows the CPUs this process may use, not the machine's."""

from __future__ import annotations

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
