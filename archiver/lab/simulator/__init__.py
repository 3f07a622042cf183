"""A fake PBX (ZYCOO CooVox style) for tests, the demo and benchmarks.

`corpus` decides which recordings exist, `audio` makes their bytes without an encoder, and
`server` serves them over the PBX's HTTP API with repeatable faults. The daemon never imports
this package, and this package never imports `archiver.names`: it is that parser's test oracle.
"""

from archiver.lab.simulator.audio import (
    AudioStream,
    gsm_raw_bytes,
    header_only_wav,
    wav_gsm_bytes,
    wav_pcm_bytes,
)
from archiver.lab.simulator.corpus import AudioFormat, Corpus, SimRecording, format_name
from archiver.lab.simulator.server import (
    CONCURRENCY_KEY,
    CORPUS_KEY,
    REQUEST_LINES_KEY,
    REQUESTED_KEY,
    SimulatorOptions,
    SimulatorThread,
    add_arguments,
    build_app,
    run_from_args,
    start_simulator,
)

__all__ = [
    "CONCURRENCY_KEY",
    "CORPUS_KEY",
    "REQUESTED_KEY",
    "REQUEST_LINES_KEY",
    "AudioFormat",
    "AudioStream",
    "Corpus",
    "SimRecording",
    "SimulatorOptions",
    "SimulatorThread",
    "add_arguments",
    "build_app",
    "format_name",
    "gsm_raw_bytes",
    "header_only_wav",
    "run_from_args",
    "start_simulator",
    "wav_gsm_bytes",
    "wav_pcm_bytes",
]
