"""Regenerate the two GSM clips the simulator ships (a developer's tool; needs ffmpeg with libgsm).

    .venv/bin/python -m archiver.lab.simulator.make_clips [--ffmpeg /usr/bin/ffmpeg]

Both clips encode the same 3 s of `audio.speech_like_pcm()`:

- `clip.gsm`: raw GSM 06.10 from `ffmpeg -f s16le -ar 8000 -ac 1 -i - -c:a libgsm -f gsm -`
  (150 frames of 33 bytes);
- `clip_gsm_ms.bin`: the `data` chunk of `ffmpeg ... -c:a libgsm_ms -f wav -`
  (75 blocks of 65 bytes).

The simulator repeats their frames to make files of any length, so it never needs an encoder.
Rerun this only if `speech_like_pcm` changes; the output is deterministic.
"""

from __future__ import annotations

import argparse
import struct
import subprocess
from pathlib import Path

from archiver.lab.simulator.audio import (
    GSM_FRAME_BYTES,
    GSM_MS_BLOCK_BYTES,
    GSM_MS_CLIP,
    RAW_GSM_CLIP,
    SAMPLE_RATE_HZ,
    speech_like_pcm,
)


def encode(ffmpeg: str, pcm: bytes, output_args: list[str]) -> bytes:
    """Encode 8 kHz mono s16le `pcm` with ffmpeg and return what it writes to stdout."""
    input_args = ["-f", "s16le", "-ar", str(SAMPLE_RATE_HZ), "-ac", "1", "-i", "pipe:0"]
    flags = ["-hide_banner", "-loglevel", "error", "-fflags", "+bitexact", "-flags", "+bitexact"]
    command = [ffmpeg, *flags, *input_args, *output_args, "pipe:1"]
    return subprocess.run(command, input=pcm, capture_output=True, check=True).stdout


def wav_data_chunk(wav: bytes) -> bytes:
    """Return the payload of a RIFF WAVE file's `data` chunk. Raise ValueError if there is none."""
    if wav[:4] != b"RIFF" or wav[8:12] != b"WAVE":
        raise ValueError("not a RIFF WAVE file")
    offset = 12
    while offset + 8 <= len(wav):
        chunk_id, size = struct.unpack_from("<4sI", wav, offset)
        if chunk_id == b"data":
            # ffmpeg cannot seek back to fix sizes on a pipe: take what is there.
            end = len(wav) if size in (0, 0xFFFFFFFF) else offset + 8 + size
            return wav[offset + 8 : end]
        offset += 8 + size + size % 2
    raise ValueError("no data chunk")


def main(argv: list[str] | None = None) -> int:
    """Write both clips next to this module and print their sizes."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--ffmpeg", default="/usr/bin/ffmpeg")
    args = parser.parse_args(argv)
    pcm = speech_like_pcm()
    raw = encode(args.ffmpeg, pcm, ["-c:a", "libgsm", "-f", "gsm"])
    blocks = wav_data_chunk(encode(args.ffmpeg, pcm, ["-c:a", "libgsm_ms", "-f", "wav"]))
    if len(raw) % GSM_FRAME_BYTES or len(blocks) % GSM_MS_BLOCK_BYTES:
        raise SystemExit(f"unexpected sizes: raw {len(raw)} B, gsm_ms {len(blocks)} B")
    here = Path(__file__).parent
    (here / RAW_GSM_CLIP).write_bytes(raw)
    (here / GSM_MS_CLIP).write_bytes(blocks)
    print(f"{RAW_GSM_CLIP}: {len(raw)} B; {GSM_MS_CLIP}: {len(blocks)} B")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
