"""Automatic calls and their results: the autocall request and the call-result callback receiver
(the `call`/`calls` commands are archiver/commands/call.py and calls.py).

Other parts import from here, not from the modules inside.
"""

from archiver.calls.autocall import AutocallRequest, build_request, pbx_datetime
from archiver.calls.callbacks import CALLBACK_STATS_KEY, add_callback_routes

__all__ = [
    "CALLBACK_STATS_KEY",
    "AutocallRequest",
    "add_callback_routes",
    "build_request",
    "pbx_datetime",
]
