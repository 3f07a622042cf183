"""One base error for every failure that carries a reason: `ArchiverError`.

`reason` is safe to log (no URL, credential or request signature ever goes into it), `transient`
says whether trying again later can help, and `kind` names the failure from a fixed vocabulary
(`Kind`), chosen where the error is raised. Metrics and any other code that sorts failures use
`kind`, never the wording of `reason`, so rewording a message changes no label.

A leaf: imports nothing of ours.
"""

from __future__ import annotations

import errno
from typing import Final, Literal, get_args

__all__ = ["KINDS", "ArchiverError", "Kind", "ListenError", "listen_error"]

Kind = Literal[
    # Transient trouble on the way (each is also a label of archiver_retries_total{reason}).
    "timeout",  # no answer in time
    "truncated",  # a body shorter than announced
    "html_page",  # an HTML page where a listing or audio was expected
    "disconnected",  # the server closed the connection
    "connect",  # could not open a connection
    "connection",  # any other connection-level failure
    "throttled",  # the server asked us to slow down
    "http_5xx",  # a server error status
    "http_status",  # any other unexpected status
    # Answers that asking again does not change (or only an operator can).
    "refused",  # credentials refused (or a login page instead of an answer)
    "not_found",  # the thing asked for is not there
    "too_large",  # over one of our size limits
    "tls",  # the server's certificate failed its check
    "conflict",  # a different object already holds the key
    "mismatch",  # what was read back is not what was sent
    "transcode",  # the audio could not be turned into a verified MP3
    "other",  # none of the above
]
KINDS: Final[tuple[Kind, ...]] = get_args(Kind)


class ArchiverError(Exception):
    """A failure with a `reason` safe to log, whether it is `transient`, and its `kind`."""

    def __init__(self, reason: str, *, transient: bool, kind: Kind) -> None:
        super().__init__(reason)
        self.reason = reason
        self.transient = transient
        self.kind: Kind = kind


class ListenError(Exception):
    """A server of ours could not bind its address; the message says why and what to change."""


def listen_error(setting: str, listen: str, error: OSError, *, who: str) -> ListenError:
    """The `ListenError` for `error` raised binding `listen`, the value of `setting` (e.g.
    `[http] listen`); `who` names what may already hold the port."""
    why = "address already in use" if error.errno == errno.EADDRINUSE else error.strerror
    return ListenError(
        f"{setting} = {listen!r}: cannot listen there ({why}): is another {who} running? "
        f"Stop it or choose another port in {setting}"
    )
