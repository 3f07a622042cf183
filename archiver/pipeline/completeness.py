"""What stands in for Content-Length when the PBX delimits a download by closing the connection.

A firmware CGI sends no Content-Length: the body ends where the connection closes, so a
connection cut halfway looks like a complete, shorter file. The file's own structure stands in:
a WAV whose fixed-up header promises more data than arrived was cut (fetched again until it is
whole, or failed), and audio that plays clearly shorter than the duration in the recording's
name probably was: that one is fetched again at once, and taken as it is only when two
downloads in a row are byte-identical, since a PBX whose recordings really are shorter
than their names (the name's duration may count ringing) sends the same bytes every time, and
a cut rarely falls twice on the same byte.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Final

from archiver.pipeline.transcode import BadAudio, probe_source

__all__ = ["SHORT_TOLERANCE_RATIO", "SHORT_TOLERANCE_S", "Shortfall", "shortfall"]

# Names carry whole seconds and codecs frame the audio (20-40 ms): only a clear gap counts.
SHORT_TOLERANCE_S: Final = 1.5
SHORT_TOLERANCE_RATIO: Final = 0.02


@dataclass(frozen=True)
class Shortfall:
    """Why a download looks cut short. `certain`: the file's own header says more should have
    followed (never taken as it is); else only its length disagrees with its name's."""

    reason: str
    certain: bool


def shortfall(source: Path, name_duration_s: float) -> Shortfall | None:
    """Given a downloaded source and the duration its name gives, return why it looks cut
    short, or None. Files the transcoder will refuse anyway (garbage, header only) are not
    judged here: that stage reports them with their own reason. Raise OSError if unreadable."""
    try:
        info = probe_source(source)
    except BadAudio as error:
        return Shortfall(error.reason, certain=True) if error.cut_short else None
    tolerance_s = max(SHORT_TOLERANCE_S, SHORT_TOLERANCE_RATIO * name_duration_s)
    if info.duration_s + tolerance_s < name_duration_s:
        reason = (
            f"the audio plays {info.duration_s:.1f} s but the name says {name_duration_s:g} s "
            "(connection closed early?)"
        )
        return Shortfall(reason, certain=False)
    return None
