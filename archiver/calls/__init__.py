"""Automatic calls and their results: the autocall request, the `call`/`calls` commands and the
call-result callback receiver.

Other parts import from here, not from the modules inside.
"""

from archiver.calls.autocall import AutocallRequest, build_request
from archiver.calls.callbacks import CALLBACK_STATS_KEY, add_callback_routes
from archiver.calls.dialing import add_call_parsers

__all__ = [
    "CALLBACK_STATS_KEY",
    "AutocallRequest",
    "add_call_parsers",
    "add_callback_routes",
    "build_request",
]
