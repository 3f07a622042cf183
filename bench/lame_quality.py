"""What LAME's algorithm quality costs: ffmpeg CPU per audio hour, and what it does to 8 kHz speech.

    .venv/bin/python bench/lame_quality.py [--levels default 5 7 9] [--bitrate 32k] [--minutes 10]

With numpy and the `pesq` package importable (neither is a dependency of archiver; e.g.
`pip install --target /tmp/lq pesq` and PYTHONPATH=/tmp/lq:<a site-packages with numpy>) it
also prints ITU-T P.862 narrow-band MOS-LQO, the objective measure made for telephone speech.

`-compression_level N` is how ffmpeg's libmp3lame takes LAME's `-q N` (0 slowest .. 9 fastest);
without it LAME keeps its own default, 3. The bitrate (CBR) is the same at every level: only
the encoder's search effort (and, from 7 on, its psychoacoustic model) changes.

Inputs, made in a temporary folder and encoded the way an Asterisk PBX writes them (sox uses the
same libgsm): the simulator's GSM clip (synthetic vowels; the bench corpus), espeak-ng speech
in Turkish (raw GSM, and PCM WAV) and in English with pink line noise (WAV49), each looped to
`--minutes`. Each file goes through archiver's own ffmpeg arguments (`output_args`).

Per level and input:
- CPU: user+sys of the ffmpeg process (os.wait4), best of `--repeat`, as seconds per audio hour;
  `uptime`'s load average is printed beside the table (the machine may be shared).
- Quality, decoded MP3 against the decoded source (what the MP3 was made from), after aligning
  by the best-fitting lag (audioop.findfit at five points; ffmpeg already trims LAME's delay
  from its tag, so the lag is expected to be 0): SNR and segmental SNR (20 ms windows within
  40 dB of the loudest, each clamped to [-10, 35] dB); the 20 ms RMS envelope: mean and 99th
  percentile of |dB difference| over those windows, and Pearson correlation of the RMS over
  all windows; PESQ on six 8 s excerpts (mean).
- For the espeak inputs one more line, `gsm-vs-clean`: the PBX's own GSM against the clean
  speech, to show how large the MP3 step's change is beside the codec the call already went
  through.

Acceptance threshold used in issue 24 (set before measuring): a level may replace the default
if, against the default on every input, segmental SNR drops by at most 1 dB, envelope mean
|dB| rises by at most 0.5 dB with correlation >= 0.99, and PESQ drops by at most 0.1 MOS.
"""

from __future__ import annotations

import argparse
import math
import os
import statistics
import subprocess
import tempfile
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from archiver.pipeline.transcode.ffmpeg_cli import (
    QUIET_NO_STDIN,
    input_args,
    lame_quality_args,
    output_args,
)
from archiver.pipeline.transcode.probe import probe_file

with warnings.catch_warnings():
    warnings.simplefilter("ignore")  # deprecated in 3.11-3.12; audioop-lts on 3.13 (via pydub)
    import audioop

FFMPEG = "/usr/bin/ffmpeg"
RATE_HZ = 8000
WINDOW = 160  # 20 ms at 8 kHz
CLIP = Path(__file__).resolve().parents[1] / "archiver/lab/simulator/clip.gsm"
TURKISH = (
    "Merhaba, müşteri hizmetlerine hoş geldiniz. Size nasıl yardımcı olabilirim? "  # noqa: RUF001
    "Sipariş numaranızı alabilir miyim lütfen? Teşekkür ederim, kaydınızı görüyorum. "  # noqa: RUF001
    "Kargonuz yarın öğleden sonra teslim edilecek. Başka bir sorunuz var mı? "  # noqa: RUF001
    "Görüşmemiz kalite standartları gereği kayıt altına alınmaktadır. İyi günler dilerim."  # noqa: RUF001
)
ENGLISH = (
    "Good morning, thank you for calling. My name is Sarah, how can I help you today? "
    "I would like to check the status of my invoice from last Thursday, number four seven two. "
    "Certainly, one moment please. The payment was received on the fifth and the balance is zero. "
    "Is there anything else? No, that is all, thanks. Have a nice day, goodbye."
)


@dataclass(frozen=True)
class Input:
    name: str
    path: Path
    clean: Path | None  # the speech before GSM, when there was one


@dataclass(frozen=True)
class Quality:
    lag: int
    snr_db: float
    seg_snr_db: float
    env_mean_db: float
    env_p99_db: float
    env_corr: float
    pesq: float | None


def run(*args: str) -> bytes:
    return subprocess.run(args, check=True, capture_output=True, timeout=600).stdout


def make_inputs(folder: Path, minutes: float) -> list[Input]:
    seconds = minutes * 60
    clip = CLIP.read_bytes()
    sim = folder / "sim.gsm"
    sim.write_bytes(clip * math.ceil(seconds / (len(clip) / 1650)))
    inputs = [Input("sim-gsm", sim, None)]
    for lang, text, noise, kind in (
        ("tr", TURKISH, False, "gsm"),
        ("en", ENGLISH, True, "wav49"),
        ("tr", TURKISH, False, "pcm"),
    ):
        clean = _speech(folder, lang, text, noise, seconds)
        out = folder / f"{lang}{'-noise' if noise else ''}.{kind}"
        codec = {
            "gsm": ["-t", "gsm"],
            "wav49": ["-t", "wav", "-e", "gsm-full-rate"],
            "pcm": ["-t", "wav", "-e", "signed", "-b", "16"],
        }[kind]
        run("sox", str(clean), "-r", "8000", "-c", "1", *codec, str(out))
        name = f"espeak-{lang}{'+noise' if noise else ''}-{kind}"
        inputs.append(Input(name, out, clean if kind != "pcm" else None))
    return inputs


def _speech(folder: Path, lang: str, text: str, noise: bool, seconds: float) -> Path:
    """espeak-ng's speech at 8 kHz, -3 dBFS peak, looped to at least `seconds`."""
    raw, short = folder / f"{lang}-22k.wav", folder / f"{lang}-8k.wav"
    run("espeak-ng", "-v", lang, "-s", "165", "-w", str(raw), text)
    run("sox", str(raw), "-r", "8000", "-c", "1", "-b", "16", str(short), "gain", "-n", "-3")
    length_s = float(run("soxi", "-D", str(short)))
    looped = folder / f"{lang}{'-noise' if noise else ''}-clean.wav"
    repeats = max(0, math.ceil(seconds / length_s) - 1)
    if not noise:
        run("sox", str(short), str(looped), "repeat", str(repeats))
        return looped
    speech = folder / f"{lang}-looped.wav"
    run("sox", str(short), str(speech), "repeat", str(repeats))
    hiss = folder / f"{lang}-noise.wav"
    total_s = float(run("soxi", "-D", str(speech)))
    run("sox", "-n", "-r", "8000", "-c", "1", "-b", "16", str(hiss),
        "synth", f"{total_s}", "pinknoise", "vol", "0.03")  # fmt: skip
    run("sox", "-m", "-v", "1", str(speech), "-v", "1", str(hiss), str(looped))
    return looped


def encode(src: Path, mp3: Path, bitrate: str, level: int | None) -> float:
    """Encode with archiver's arguments; return ffmpeg's user+sys CPU seconds (wait4)."""
    command = [FFMPEG, *QUIET_NO_STDIN, *input_args(probe_file(src), src)]
    command += output_args(mp3, bitrate, [], quality=lame_quality_args(level))
    process = subprocess.Popen(command, stdin=subprocess.DEVNULL, stderr=subprocess.PIPE)
    _, status, usage = os.wait4(process.pid, 0)
    process.returncode = os.waitstatus_to_exitcode(status)
    assert process.stderr is not None
    error = process.stderr.read().decode(errors="replace")
    if process.returncode != 0:
        raise RuntimeError(f"ffmpeg failed: {error}")
    return usage.ru_utime + usage.ru_stime


def pcm(path: Path) -> bytes:
    """Decode to 16-bit 8 kHz mono PCM, as a listener's player would."""
    head = input_args(probe_file(path), path) if path.suffix != ".mp3" else ["-i", str(path)]
    return run(FFMPEG, *QUIET_NO_STDIN, *head, "-f", "s16le", "-ac", "1", "-ar", "8000", "-")


def best_lag(ref: bytes, deg: bytes, search: int = 1200) -> int:
    """Samples by which `deg` lags `ref`: the median of audioop.findfit at five points."""
    n = min(len(ref), len(deg)) // 2
    lags = []
    for k in range(1, 6):
        at = n * k // 6
        at = max(search, min(at, n - 4000 - search))
        reference = ref[2 * at : 2 * (at + 4000)]
        if audioop.rms(reference, 2) < 100:
            continue
        fragment = deg[2 * (at - search) : 2 * (at + 4000 + search)]
        offset, _ = audioop.findfit(fragment, reference)
        lags.append(offset - search)
    return int(statistics.median(lags)) if lags else 0


def aligned(ref: bytes, deg: bytes, lag: int) -> tuple[bytes, bytes]:
    if lag > 0:
        deg = deg[2 * lag :]
    elif lag < 0:
        ref = ref[-2 * lag :]
    n = min(len(ref), len(deg)) // (2 * WINDOW) * 2 * WINDOW
    return ref[:n], deg[:n]


def quality(ref: bytes, deg: bytes, with_pesq: bool) -> Quality:
    lag = best_lag(ref, deg)
    ref, deg = aligned(ref, deg, lag)
    diff = audioop.add(deg, audioop.mul(ref, 2, -1.0), 2)
    step = 2 * WINDOW
    s_rms = [audioop.rms(ref[i : i + step], 2) for i in range(0, len(ref), step)]
    d_rms = [audioop.rms(deg[i : i + step], 2) for i in range(0, len(deg), step)]
    e_rms = [audioop.rms(diff[i : i + step], 2) for i in range(0, len(diff), step)]
    floor = max(s_rms) / 100  # within 40 dB of the loudest window: speech, not pauses
    active = [i for i, s in enumerate(s_rms) if s >= floor]
    signal = sum(s * s for s in s_rms)
    noise = sum(e * e for e in e_rms) or 1e-9
    seg = [min(35.0, max(-10.0, 20 * math.log10(s_rms[i] / max(e_rms[i], 1e-3)))) for i in active]
    env = sorted(abs(20 * math.log10((d_rms[i] + 1) / (s_rms[i] + 1))) for i in active)
    return Quality(
        lag=lag,
        snr_db=10 * math.log10(signal / noise),
        seg_snr_db=statistics.fmean(seg),
        env_mean_db=statistics.fmean(env),
        env_p99_db=env[min(len(env) - 1, int(0.99 * len(env)))],
        env_corr=statistics.correlation([float(s) for s in s_rms], [float(d) for d in d_rms]),
        pesq=_pesq(ref, deg) if with_pesq else None,
    )


def _pesq(ref: bytes, deg: bytes) -> float:
    import numpy as np
    from pesq import pesq

    a = np.frombuffer(ref, dtype="<i2").astype(np.float32)
    b = np.frombuffer(deg, dtype="<i2").astype(np.float32)
    size = 8 * RATE_HZ
    starts = [(len(a) - size) * k // 7 for k in range(1, 7)]
    return statistics.fmean(
        float(pesq(RATE_HZ, a[s : s + size], b[s : s + size], "nb")) for s in starts
    )


def pesq_available() -> bool:
    try:
        import numpy  # noqa: F401
        import pesq  # noqa: F401
    except ImportError:
        return False
    return True


def level_name(level: int | None) -> str:
    return "default(3)" if level is None else str(level)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--levels", nargs="+", default=["default", "5", "7", "9"])
    parser.add_argument("--bitrate", default="32k")
    parser.add_argument("--minutes", type=float, default=10.0)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args(argv)
    levels = [None if x == "default" else int(x) for x in args.levels]
    with_pesq = pesq_available()
    pesq_state = "on" if with_pesq else "off (numpy/pesq missing)"
    print(
        f"lame_quality: ffmpeg {FFMPEG}, bitrate {args.bitrate}, {args.minutes:g} min per input,"
        f" best of {args.repeat}; PESQ {pesq_state}"
    )
    header = (
        f"{'input':<24} {'level':>10} {'cpu s/h':>8} {'lag':>4} {'SNR':>6} {'segSNR':>6}"
        f" {'env|dB|':>7} {'env p99':>7} {'env r':>6} {'PESQ':>5}"
    )
    with tempfile.TemporaryDirectory(prefix="lame-quality-") as name:
        folder = Path(name)
        inputs = make_inputs(folder, args.minutes)
        print(header)
        for item in inputs:
            source = pcm(item.path)
            audio_s = len(source) / 2 / RATE_HZ
            if item.clean is not None:
                q = quality(pcm(item.clean), source, with_pesq)
                print(_row(item.name, "gsm-vs-clean", None, q))
            for level in levels:
                mp3 = folder / "out.mp3"
                cpu = min(encode(item.path, mp3, args.bitrate, level) for _ in range(args.repeat))
                q = quality(source, pcm(mp3), with_pesq)
                print(_row(item.name, level_name(level), cpu / audio_s * 3600, q), flush=True)
    print("load average (1, 5, 15 min):", " ".join(f"{x:.2f}" for x in os.getloadavg()))
    return 0


def _row(name: str, level: str, cpu_s_per_h: float | None, q: Quality) -> str:
    cpu = f"{cpu_s_per_h:8.2f}" if cpu_s_per_h is not None else f"{'-':>8}"
    pesq = f"{q.pesq:5.2f}" if q.pesq is not None else f"{'-':>5}"
    return (
        f"{name:<24} {level:>10} {cpu} {q.lag:>4} {q.snr_db:6.2f} {q.seg_snr_db:6.2f}"
        f" {q.env_mean_db:7.3f} {q.env_p99_db:7.3f} {q.env_corr:6.4f} {pesq}"
    )


if __name__ == "__main__":
    raise SystemExit(main())
