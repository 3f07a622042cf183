"""Backfill benchmark: archiver against the ideal and the naive script, on one corpus, one machine.

Run: scripts/bench [--recordings 1000] [--naive-subset 40] [--memory-sizes 2000 10000] ...
(scripts/bench bootstraps .venv with the bench extra and bench/.venv-aws, then runs this file.)

Everything runs on 127.0.0.1: the PBX simulator (`archiver simulate`, its own process) and a
SeaweedFS S3 server. The same recordings go through three contenders:

- ideal: the recordings already on local disk, one plain ffmpeg per file, `nproc` in parallel
  (xargs -P), no network. The floor for this work on this machine.
- naive: bench/naive.sh, per file one after the other: curl, ffmpeg, `aws s3 cp` (awscli from its
  own venv, bench/.venv-aws). It runs on --naive-subset recordings only, every k-th one, so the
  same mix of formats and lengths (awscli alone takes about half a second per file); throughput
  is per recording and per audio second, so the ratio stays fair. The output says so.
- archiver: `archiver backfill` over the corpus's days into an empty bucket and ledger.

The archiver runs once per engine (--engines; "default" is the default settings, engine "auto").
By default (--cpus 0 0,1 on a machine with two CPUs or more) the ideal and every archiver run
happen once per CPU set, each contender under
`taskset -c SET` (the ideal with one ffmpeg per CPU of the set, archiver with its default worker
count, which follows the affinity), and a ratio line is printed per set. The simulator and
SeaweedFS stay unpinned: they stand for the PBX and S3, which are other machines; pinning them
onto the contender's core would charge archiver for CPU the ideal never spends. To pin them too,
run the whole bench under taskset instead (`taskset -c 0 scripts/bench`).
Per contender: wall s, recordings/s, audio seconds per wall second, CPU s (the contender's
process and every descendant, from wait4's rusage), peak RSS of its process tree (sampled with
psutil every 50 ms, summed over the tree: shared library pages of concurrent ffmpegs count
once per process, so this overstates a little). Also the main process's own CPU and peak RSS,
and the CPU the simulator and SeaweedFS spent meanwhile (they share the cores). Then the
archiver's peak RSS over corpora of 2,000 and 10,000 one-second recordings, with
--memory-engine (the count is what could grow memory; long files are covered by the main run),
the CPU time of one poll over a day of 20,000 already-archived names, a `cpu_budget` block per
archiver run (CPU ms per recording by stage, bench/budget.py; --no-cpu-budget leaves it out), and
last one line
`ratio_vs_ideal X ratio_vs_naive Y` per archiver engine (recordings/s over the others'), the
final one for the last engine given (default: "ffmpeg").
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import shutil
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import psutil
from budget import budget_lines, ffmpeg_start_ms

from archiver.lab.seaweed import SeaweedS3
from archiver.lab.simulator import Corpus, SimRecording
from archiver.pipeline.cpus import usable_cpus

ROOT = Path(__file__).resolve().parent.parent
PYTHON = sys.executable
AWS = ROOT / "bench" / ".venv-aws" / "bin" / "aws"
PBX_USER = "admin"
PBX_PASSWORD = "bench-pbx-password"  # noqa: S105 -- the local simulator's throwaway password
SEED = 5
FIRST_DAY = date(2016, 11, 1)
SAMPLE_EVERY_S = 0.05
PROFILE_DIR: Path | None = None  # --profile: py-spy collapsed stacks of each archiver run
CPUS: str | None = None  # the CPU set of the runs in progress (--cpus), for taskset
CPU_BUDGET = True  # --no-cpu-budget: archiver runs without archiver/cpu_budget.py's counting
LOG_LEVEL = "error"  # --log-level of the archiver runs
START_MS: dict[str, float] = {}  # one ffmpeg start's CPU ms, per CPU set ("@0", "")


@dataclass
class Result:
    """One contender's run."""

    name: str
    recordings: int
    audio_s: float
    wall_s: float
    cpu_s: float
    peak_rss_mb: float
    note: str = ""
    own_cpu_s: float | None = None  # the contender's main process alone (the rest: its children)
    own_peak_rss_mb: float | None = None
    services_cpu_s: float | None = None  # the simulator and SeaweedFS meanwhile
    load_after: str = ""  # the load average when the run ended
    budget: dict[str, Any] | None = None  # archiver's CPU budget (archiver/cpu_budget.py)

    @property
    def per_s(self) -> float:
        return self.recordings / self.wall_s

    @property
    def audio_per_s(self) -> float:
        return self.audio_s / self.wall_s

    def line(self) -> str:
        return (
            f"{self.name:<16} {self.recordings:>6} rec {self.wall_s:>8.1f} wall_s "
            f"{self.per_s:>7.2f} rec/s {self.audio_per_s:>8.0f} audio_s/s "
            f"{self.cpu_s:>8.1f} cpu_s {self.peak_rss_mb:>7.1f} peak_rss_mb"
            + (f"  ({self.note})" if self.note else "")
            + (
                f" [main process {self.own_cpu_s:.1f} cpu_s, peak {self.own_peak_rss_mb:.0f} MB]"
                if self.own_cpu_s is not None and self.own_peak_rss_mb is not None
                else ""
            )
            + (
                f" [simulator + SeaweedFS {self.services_cpu_s:.1f} cpu_s]"
                if self.services_cpu_s is not None
                else ""
            )
        )


@dataclass
class Tree:
    """What one measured process tree used."""

    returncode: int
    wall_s: float
    cpu_s: float
    peak_rss_mb: float
    own_cpu_s: float = 0.0
    services_cpu_s: float = 0.0
    own_peak_rss_mb: float = 0.0


def tree_cpu_s(pids: Sequence[int]) -> float:
    """User + system seconds so far of these processes and their live descendants."""
    total = 0.0
    for pid in pids:
        with contextlib.suppress(psutil.NoSuchProcess):
            root = psutil.Process(pid)
            for proc in [root, *root.children(recursive=True)]:
                with contextlib.suppress(psutil.NoSuchProcess):
                    times = proc.cpu_times()
                    total += times.user + times.system
    return total


def run_measured(
    command: Sequence[str],
    *,
    env: dict[str, str] | None = None,
    stdin: bytes | None = None,
    services: Sequence[int] = (),
) -> Tree:
    """Run `command`; return its exit code, wall time, CPU of the whole tree and peak tree RSS.

    CPU comes from wait4(): the child's own time plus that of every descendant it waited for
    (ffmpeg children are always waited for). RSS is sampled: the sum over the live tree.
    """
    if CPUS is not None:
        command = ["taskset", "-c", CPUS, *command]
    services0 = tree_cpu_s(services)
    started = time.perf_counter()
    proc = subprocess.Popen(
        command,
        env=env,
        stdin=subprocess.PIPE if stdin is not None else subprocess.DEVNULL,
        start_new_session=True,
    )
    peak = [0, 0]  # the tree's, the main process's
    own = [0.0]
    done = threading.Event()
    sampler = threading.Thread(target=_sample, args=(proc.pid, peak, own, done), daemon=True)
    sampler.start()
    if stdin is not None and proc.stdin is not None:
        with contextlib.suppress(BrokenPipeError):
            proc.stdin.write(stdin)
        proc.stdin.close()
    _, status, usage = os.wait4(proc.pid, 0)
    wall_s = time.perf_counter() - started
    proc.returncode = os.waitstatus_to_exitcode(status)
    done.set()
    sampler.join()
    return Tree(
        returncode=proc.returncode,
        wall_s=wall_s,
        cpu_s=usage.ru_utime + usage.ru_stime,
        peak_rss_mb=peak[0] / 2**20,
        own_cpu_s=own[0],
        services_cpu_s=tree_cpu_s(services) - services0,
        own_peak_rss_mb=peak[1] / 2**20,
    )


def _sample(pid: int, peak: list[int], own: list[float], done: threading.Event) -> None:
    """Until `done`: the peak RSS summed over `pid`'s tree, and `pid`'s own CPU (last seen)."""
    try:
        root = psutil.Process(pid)
        root_exe = root.exe()
    except (psutil.NoSuchProcess, psutil.ZombieProcess):
        return
    while not done.wait(SAMPLE_EVERY_S):
        total = 0
        try:
            tree = [root, *root.children(recursive=True)]
            times = root.cpu_times()
            own[0] = times.user + times.system
        except (psutil.NoSuchProcess, psutil.ZombieProcess):
            return
        for proc in tree:
            with contextlib.suppress(psutil.NoSuchProcess, psutil.ZombieProcess):
                if proc is not root and proc.exe() == root_exe:
                    continue  # forked, not yet exec'd: its pages are the parent's, counted
                rss = proc.memory_info().rss
                total += rss
                if proc is root:
                    peak[1] = max(peak[1], rss)
        peak[0] = max(peak[0], total)


# -- the shared services ---------------------------------------------------------------------------


@contextlib.contextmanager
def simulator(
    days: int, per_day: int, max_duration_s: int | None = None
) -> Iterator[tuple[str, int]]:
    """Run `archiver simulate` in its own process; yield its base URL and PID."""
    command = [
        PYTHON, "-m", "archiver", "simulate", "--listen", "127.0.0.1:0",
        "--username", PBX_USER, "--password", PBX_PASSWORD, "--seed", str(SEED),
        "--start", FIRST_DAY.isoformat(), "--days", str(days), "--per-day", str(per_day),
        "--no-odd-names", "--no-junk",
    ]  # fmt: skip
    if max_duration_s is not None:
        command += ["--max-duration-s", str(max_duration_s)]
    proc = subprocess.Popen(command, stdout=subprocess.PIPE, stdin=subprocess.DEVNULL, text=True)
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        url = next((w for w in line.split() if w.startswith("http://")), None)
        if url is None:
            raise RuntimeError(f"the simulator did not start: {line!r}")
        yield url, proc.pid
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def corpus(days: int, per_day: int, max_duration_s: int | None = None) -> list[SimRecording]:
    """The recordings the simulator serves for these options (same seed, same corpus)."""
    built = Corpus(
        seed=SEED, start=FIRST_DAY, days=days, per_day=per_day, max_duration_s=max_duration_s,
        odd_names=False, junk=False,
    )  # fmt: skip
    return [rec for rec in built.recordings() if rec.valid]


def split_days(recordings: int, per_day: int) -> tuple[int, int]:
    days = max(1, -(-recordings // per_day))
    return days, -(-recordings // days)


# -- contenders ------------------------------------------------------------------------------------


def run_ideal(recs: list[SimRecording], work: Path, ffmpeg: str) -> Result:
    """Write the sources to disk (not timed), then xargs -P nproc ffmpeg, one per file."""
    src = work / "ideal"
    src.mkdir()
    built = Corpus(seed=SEED, start=FIRST_DAY, days=1, per_day=0, odd_names=False, junk=False)
    names = []
    for index, rec in enumerate(recs):
        path = src / f"{index:06d}_{rec.name}"
        with path.open("wb") as f:
            for chunk in built.audio_stream(rec).chunks():
                f.write(chunk)
        names.append(str(path))
    cores = _cpu_count()
    command = [
        "xargs", "-0", "-P", str(cores), "-I{}",
        ffmpeg, "-nostdin", "-hide_banner", "-loglevel", "error", "-i", "{}",
        "-b:a", "32k", "-y", "{}.mp3",
    ]  # fmt: skip
    tree = run_measured(command, stdin=b"\0".join(n.encode() for n in names))
    made = len(list(src.glob("*.mp3")))
    shutil.rmtree(src)
    if tree.returncode != 0 or made != len(recs):
        raise RuntimeError(f"ideal: exit {tree.returncode}, {made} of {len(recs)} MP3s")
    return _result("ideal", recs, tree, f"xargs -P {cores} {Path(ffmpeg).name}, local disk")


def run_naive(
    recs: list[SimRecording], work: Path, ffmpeg: str, sim: tuple[str, int], s3: SeaweedS3
) -> Result:
    """bench/naive.sh over `recs`, one file after the other."""
    scratch = work / "naive"
    scratch.mkdir()
    s3.create_bucket("naive")
    env = {
        **os.environ,
        **s3.aws_env(),
        "PBX_URL": sim[0],
        "PBX_USER": PBX_USER,
        "PBX_PASSWORD": PBX_PASSWORD,
        "BUCKET": "naive",
        "S3_ENDPOINT": s3.endpoint_url,
        "AWS": str(AWS),
        "FFMPEG": ffmpeg,
        "WORK": str(scratch),
    }
    lines = "".join(f"{rec.relative_path}\t{rec.folder}/{rec.name}.mp3\n" for rec in recs)
    naive = ["bash", str(ROOT / "bench" / "naive.sh")]
    tree = run_measured(naive, env=env, stdin=lines.encode(), services=(sim[1], s3.pid))
    if tree.returncode != 0:
        raise RuntimeError(f"naive: exit {tree.returncode}")
    return _result("naive", recs, tree, "curl + ffmpeg + aws s3 cp per file")


def run_archiver(
    label: str,
    recs: list[SimRecording],
    days: int,
    work: Path,
    sim: tuple[str, int],
    s3: SeaweedS3,
    transcode_toml: str,
) -> Result:
    """`archiver backfill` over `days` days into a new bucket and a new ledger."""
    state = work / label
    state.mkdir()
    bucket = f"bench-{label}".replace("_", "-").lower()
    s3.create_bucket(bucket)
    config = state / "archiver.toml"
    config.write_text(
        f"""
[[pbx]]
name = "bench"
url = "{sim[0]}"
username = "{PBX_USER}"
password_env = "BENCH_PBX_PASSWORD"
timezone = "Europe/Istanbul"

[poll]
settle_s = 0

[transcode]
{transcode_toml}

[s3]
bucket = "{bucket}"
endpoint_url = "{s3.endpoint_url}"
region = "us-east-1"
addressing_style = "path"

[state]
path = "{state / "ledger.sqlite3"}"
""",
        encoding="utf-8",
    )
    env = {
        **os.environ,
        "BENCH_PBX_PASSWORD": PBX_PASSWORD,
        "AWS_ACCESS_KEY_ID": s3.access_key,
        "AWS_SECRET_ACCESS_KEY": s3.secret_key,
    }
    budget_file = state / "cpu-budget.json"
    if CPU_BUDGET:
        env["ARCHIVER_CPU_BUDGET"] = str(budget_file)
    last = FIRST_DAY + timedelta(days=days - 1)
    command = [
        PYTHON, "-m", "archiver", "backfill", "--config", str(config),
        "--from", FIRST_DAY.isoformat(), "--to", last.isoformat(), "--log-level", LOG_LEVEL,
    ]  # fmt: skip
    if PROFILE_DIR is not None:
        PROFILE_DIR.mkdir(parents=True, exist_ok=True)
        out = PROFILE_DIR / f"{label}.txt"
        spy = Path(PYTHON).parent / "py-spy"
        command = [
            str(spy),
            "record",
            "--format",
            "raw",
            "--nonblocking",
            "-o",
            str(out),
            "--",
            *command,
        ]
    tree = run_measured(command, env=env, services=(sim[1], s3.pid))
    stored = _count_objects(s3, bucket)
    budget = json.loads(budget_file.read_text()) if budget_file.exists() else None
    shutil.rmtree(state)
    if tree.returncode != 0 or stored != len(recs):
        raise RuntimeError(f"{label}: exit {tree.returncode}, {stored} of {len(recs)} stored")
    result = _result(label, recs, tree, transcode_toml.replace("\n", ", ") or "defaults")
    result.budget = budget
    return result


def _count_objects(s3: SeaweedS3, bucket: str) -> int:
    pages = s3.client().get_paginator("list_objects_v2").paginate(Bucket=bucket)
    return sum(len(page.get("Contents", [])) for page in pages)


def _result(name: str, recs: list[SimRecording], tree: Tree, note: str) -> Result:
    return Result(
        name=name,
        recordings=len(recs),
        audio_s=float(sum(rec.duration_s for rec in recs)),
        wall_s=tree.wall_s,
        cpu_s=tree.cpu_s,
        peak_rss_mb=tree.peak_rss_mb,
        note=note,
        own_cpu_s=tree.own_cpu_s,
        services_cpu_s=tree.services_cpu_s,
        own_peak_rss_mb=tree.own_peak_rss_mb,
    )


# -- one poll over 20,000 archived names -----------------------------------------------------------


def poll_cpu_s(names: int, work: Path) -> tuple[float, float, int]:
    """CPU and wall seconds of one `poll_once` over a day of `names` recordings, all archived.

    The simulator runs in its own process, so its CPU is not counted; this process's CPU
    (time.process_time, every thread) is. Returns (cpu_s, wall_s, recordings listed).
    """
    from archiver.config import Config
    from archiver.names import parse_path
    from archiver.pbx.client import PbxClient
    from archiver.pipeline import Archiver
    from archiver.s3.store import S3Store
    from archiver.state.ledger import Ledger

    day_recs = corpus(1, names)
    tz = ZoneInfo("Europe/Istanbul")
    state = work / "poll"
    state.mkdir()
    ledger = Ledger.open(state / "ledger.sqlite3")
    parsed = [parse_path("bench", rec.path, tz) for rec in day_recs]
    ledger.discover(parsed)
    ledger.close()
    with sqlite3.connect(state / "ledger.sqlite3") as db:  # one transaction, not 20,000
        db.execute("UPDATE recordings SET state = 'verified', object_key = key")
    ledger = Ledger.open(state / "ledger.sqlite3")
    now = datetime.combine(FIRST_DAY + timedelta(days=0), datetime.max.time(), tz)
    with simulator(1, names) as (url, _):
        cfg = Config.model_validate(
            {
                "pbx": [{"name": "bench", "url": url, "username": PBX_USER,
                         "password": PBX_PASSWORD, "timezone": "Europe/Istanbul"}],
                "poll": {"lookback_days": 0, "settle_s": 0},
                "s3": {"bucket": "unused", "endpoint_url": "http://127.0.0.1:9",
                       "region": "us-east-1"},
                "state": {"path": str(state / "ledger.sqlite3")},
            }
        )  # fmt: skip

        async def one_poll() -> tuple[float, float, int]:
            client = PbxClient(cfg.pbx[0], PBX_PASSWORD)
            archiver = Archiver(
                cfg=cfg, ledger=ledger, store=S3Store(cfg.s3), clients={"bench": client},
                ffmpeg="ffmpeg", clock=lambda: now,
            )  # fmt: skip
            try:
                await archiver.poll_once()  # warm-up: imports, connection, page cache
                cpu0, wall0 = time.process_time(), time.perf_counter()
                report = await archiver.poll_once()
                cpu_s, wall_s = time.process_time() - cpu0, time.perf_counter() - wall0
            finally:
                await client.close()
                archiver.close()
            if report.due or report.listed != len(day_recs):
                raise RuntimeError(f"poll: {report}")
            return cpu_s, wall_s, report.listed

        try:
            return asyncio.run(one_poll())
        finally:
            ledger.close()


# -- main ------------------------------------------------------------------------------------------


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--recordings", type=int, default=1000, help="main corpus size")
    parser.add_argument("--per-day", type=int, default=200, help="recordings per simulated day")
    parser.add_argument(
        "--naive-subset", type=int, default=40, help="recordings the naive script runs (0: all)"
    )
    parser.add_argument(
        "--engines",
        nargs="*",
        default=["default"],
        help="archiver runs: default (no [transcode] settings) or an engine (auto, pydub, "
        "ffmpeg); ENGINE:N sets transcode.batch_files = N",
    )
    parser.add_argument(
        "--cpus",
        nargs="*",
        default=_default_cpu_sets(),
        metavar="SET",
        help="run the ideal and the archiver runs once per CPU set under `taskset -c SET` "
        f"(default: {' '.join(_default_cpu_sets()) or 'unpinned'}: one core, then two; "
        "--cpus with no set: unpinned, once)",
    )
    parser.add_argument("--memory-sizes", type=int, nargs="*", default=[2000, 10000])
    parser.add_argument(
        "--memory-max-duration-s", type=int, default=1, help="audio cap of the memory corpora"
    )
    parser.add_argument(
        "--memory-engine", default="default", help="engine of the memory runs (as --engines)"
    )
    parser.add_argument("--poll-names", type=int, default=20000)
    parser.add_argument(
        "--no-cpu-budget",
        action="store_true",
        help="run archiver without counting its CPU by stage (ARCHIVER_CPU_BUDGET), which "
        "adds a few microseconds per event-loop callback",
    )
    parser.add_argument(
        "--log-level", default="error", help="archiver's --log-level (the daemon's is info)"
    )
    parser.add_argument("--skip", nargs="*", default=[], choices=["ideal", "naive", "poll"])
    parser.add_argument("--ffmpeg", default=shutil.which("ffmpeg") or "ffmpeg")
    parser.add_argument(
        "--profile", type=Path, default=None, help="write py-spy stacks of archiver runs here"
    )
    args = parser.parse_args(argv)
    global PROFILE_DIR, CPU_BUDGET, LOG_LEVEL
    PROFILE_DIR = args.profile
    CPU_BUDGET = not args.no_cpu_budget
    LOG_LEVEL = args.log_level
    print(
        f"bench: nproc {os.cpu_count()}, usable {usable_cpus()}, load average {_load()}, "
        f"ffmpeg {args.ffmpeg}"
    )
    with tempfile.TemporaryDirectory(prefix="archiver-bench-") as folder:
        work = Path(folder)
        results = _main_runs(args, work)
        for result in results:
            print(result.line(), flush=True)
        memory = _memory_runs(args, work)
        poll = None if "poll" in args.skip else poll_cpu_s(args.poll_names, work)
    print(f"bench: load average {_load()} at the end")
    for result in results:
        print(result.line())
    for label, result in memory:
        print(f"archiver_peak_rss_mb at {label}: {result.peak_rss_mb:.1f}  ({result.line()})")
    if len(memory) >= 2:
        low, high = memory[0][1].peak_rss_mb, memory[-1][1].peak_rss_mb
        print(f"peak_rss_growth {memory[0][0]} -> {memory[-1][0]}: {100 * (high / low - 1):+.1f} %")
    if poll is not None:
        cpu_s, wall_s, listed = poll
        print(f"poll_cpu_s {cpu_s:.3f} (wall {wall_s:.3f} s) for one poll over {listed} names")
    _print_budgets(results)
    _print_ratios(results)
    return 0


def _print_budgets(results: list[Result]) -> None:
    """archiver's CPU budget per recording, by stage, for every archiver run that has one."""
    for result in results:
        if result.budget is None:
            continue
        where = result.name.partition("@")[2]
        start_ms = START_MS.get(f"@{where}" if where else "")
        lines = budget_lines(
            result.name, result.budget, result.recordings, result.cpu_s,
            result.load_after or _load(), start_ms,
        )  # fmt: skip
        print("\n".join(lines))


def _print_ratios(results: list[Result]) -> None:
    """One `ratio_vs_ideal X ratio_vs_naive Y` line per archiver run, against the ideal of the
    same CPU set."""
    naive = next((r for r in results if r.name == "naive"), None)
    for result in results:
        if not result.name.startswith("archiver"):
            continue
        where = result.name.partition("@")[2]
        ideal = next((r for r in results if r.name == f"ideal@{where}" if where), None)
        ideal = ideal or next((r for r in results if r.name == "ideal"), None)
        vs_ideal = f"{result.per_s / ideal.per_s:.2f}" if ideal else "n/a"
        vs_naive = f"{result.per_s / naive.per_s:.1f}" if naive else "n/a"
        which = "default settings" if result.note == "defaults" else result.note
        cpus = f" cpus={where}" if where else ""
        print(
            f"ratio_vs_ideal {vs_ideal} ratio_vs_naive {vs_naive}  ({result.name}: {which};"
            f" load average {result.load_after or _load()} when it ended){cpus}"
        )


def _default_cpu_sets() -> list[str]:
    """One CPU, then two, of those this process may use (the issue's 1- and 2-core goals)."""
    allowed = sorted(os.sched_getaffinity(0))
    return [str(allowed[0]), f"{allowed[0]},{allowed[1]}"] if len(allowed) >= 2 else []


def _cpu_count() -> int:
    """CPUs of the runs in progress: the --cpus set's size, else what this process may use."""
    if CPUS is None:
        return usable_cpus()
    count = 0
    for part in CPUS.split(","):
        first, _, last = part.partition("-")
        count += int(last or first) - int(first) + 1
    return count


def _transcode_toml(spec: str) -> tuple[str, str]:
    """(label suffix, [transcode] body) for an --engines entry."""
    if spec == "default":
        return "", ""
    engine, _, batch = spec.partition(":")
    toml = f'engine = "{engine}"' + (f"\nbatch_files = {batch}" if batch else "")
    return "_" + spec.replace(":", "_b"), toml


def _main_runs(args: argparse.Namespace, work: Path) -> list[Result]:
    global CPUS
    days, per_day = split_days(args.recordings, args.per_day)
    recs = corpus(days, per_day)
    audio_h = sum(r.duration_s for r in recs) / 3600
    print(f"bench: corpus {len(recs)} recordings over {days} days, {audio_h:.1f} h of audio")
    results = []
    with simulator(days, per_day) as sim, SeaweedS3(data_dir=work / "s3") as s3:
        for cpus in args.cpus or [None]:
            CPUS = cpus
            where = f"@{cpus}" if cpus is not None else ""
            if CPU_BUDGET:
                START_MS[where] = ffmpeg_start_ms(args.ffmpeg, work, cpus)
                print(
                    f"bench: one ffmpeg start costs {START_MS[where]:.1f} CPU ms{where} "
                    f"(load average {_load()})",
                    flush=True,
                )
            if "ideal" not in args.skip:
                ideal = run_ideal(recs, work, args.ffmpeg)
                ideal.name += where
                results.append(ideal)
                print(results[-1].line(), flush=True)
            for spec in args.engines:
                suffix, toml = _transcode_toml(spec)
                label = f"archiver{suffix}{where}"
                run_label = label.replace("@", "_cpus").replace(",", "_")
                result = run_archiver(run_label, recs, days, work, sim, s3, toml)
                result.name = label
                result.load_after = _load()
                results.append(result)
                print(f"{results[-1].line()}  [load average {_load()}]", flush=True)
        CPUS = None
        if "naive" not in args.skip:
            # Every k-th recording: the same mix of formats and lengths as the whole corpus.
            step = max(1, len(recs) // args.naive_subset) if args.naive_subset else 1
            subset = recs[::step][: args.naive_subset or None]
            result = run_naive(subset, work, args.ffmpeg, sim, s3)
            if len(subset) < len(recs):
                result.note += f"; every {step}th recording, {len(subset)} of {len(recs)} only"
            results.append(result)
            print(results[-1].line(), flush=True)
    return results


def _memory_runs(args: argparse.Namespace, work: Path) -> list[tuple[str, Result]]:
    out = []
    for size in args.memory_sizes:
        days, per_day = split_days(size, args.per_day * 5)
        recs = corpus(days, per_day, args.memory_max_duration_s)
        with (
            simulator(days, per_day, args.memory_max_duration_s) as sim,
            SeaweedS3(data_dir=work / f"s3-{size}") as s3,
        ):
            _, toml = _transcode_toml(args.memory_engine)
            result = run_archiver(f"memory{size}", recs, days, work, sim, s3, toml)
        print(result.line(), flush=True)
        out.append((f"{len(recs)} recordings", result))
    return out


def _load() -> str:
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


if __name__ == "__main__":
    sys.exit(main())
