"""CPU time of one `transcode_to_mp3` call, per engine and ffmpeg binary, on raw GSM sources.

Run: .venv/bin/python bench/profile_transcode.py [--repeat 5] [--seconds 60 600]

CPU is user+sys of this process plus its waited-for children (RUSAGE_SELF + RUSAGE_CHILDREN),
so pydub's Python-side work and every ffmpeg it starts are counted. Each cell is the median run.
"""

from __future__ import annotations

import argparse
import resource
import statistics
import tempfile
import time
from pathlib import Path

import imageio_ffmpeg

from archiver.lab.simulator.audio import gsm_raw_stream
from archiver.pipeline.transcode import Engine, transcode_to_mp3

FFMPEGS = {"debian 5.1": "/usr/bin/ffmpeg", "static 9.0": imageio_ffmpeg.get_ffmpeg_exe()}
ENGINES: tuple[Engine, ...] = ("pydub", "ffmpeg")
TAGS = {"title": "100 → 903123320404", "artist": "100", "comment": "bench"}


def cpu_s() -> float:
    own = resource.getrusage(resource.RUSAGE_SELF)
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


def measure(src: Path, dst: Path, ffmpeg: str, engine: Engine) -> tuple[float, float]:
    """Return (CPU s, wall s) of one transcode."""
    cpu0, wall0 = cpu_s(), time.perf_counter()
    transcode_to_mp3(src, dst, ffmpeg=ffmpeg, tags=TAGS, engine=engine)
    return cpu_s() - cpu0, time.perf_counter() - wall0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--seconds", type=int, nargs="+", default=[60, 600])
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        work = Path(folder)
        print(f"{'audio':>6} {'ffmpeg':<11} {'engine':<7} {'CPU s':>7} {'wall s':>7}")
        for seconds in args.seconds:
            src = work / f"{seconds}.gsm"
            with src.open("wb") as f:
                for chunk in gsm_raw_stream(seconds).chunks():
                    f.write(chunk)
            for name, ffmpeg in FFMPEGS.items():
                for engine in ENGINES:
                    measure(src, work / "warm.mp3", ffmpeg, engine)  # page cache, imports
                    runs = [
                        measure(src, work / "out.mp3", ffmpeg, engine) for _ in range(args.repeat)
                    ]
                    cpu = statistics.median(r[0] for r in runs)
                    wall = statistics.median(r[1] for r in runs)
                    print(f"{seconds:>5}s {name:<11} {engine:<7} {cpu:>7.3f} {wall:>7.3f}")


if __name__ == "__main__":
    main()
