"""The one place a PBX request's query string is built, byte for byte as the document writes it.

The document writes `cmd=find%20/var/spool/asterisk/monitor/recording/%20-name%20*20161118-*`.
A CGI on embedded firmware often decodes `%XX` escapes only; it does not turn `+` into a space.
So a space is sent as `%20` (never `+`), `/` and `*` are sent as they are (as the document
does), and every other character outside RFC 3986's unreserved set, `+` included (a caller
`+90...`), is `%XX`-escaped (UTF-8). Parameters go in the order given: the documented order.

This module imports nothing of ours; the client hands the result to aiohttp as an already
encoded URL, so nothing re-encodes it on the way to the wire.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Final
from urllib.parse import quote

__all__ = ["encode_value", "query_string", "request_target"]

# Kept as they are besides the unreserved characters (A-Z a-z 0-9 - . _ ~), which quote() always
# keeps: the two the document itself writes unescaped inside `cmd`.
_SAFE: Final = "/*"


def encode_value(value: str) -> str:
    """Return `value` %XX-escaped for a query string: space as `%20`, `+` as `%2B`, `&` `=` `%`
    `#` and every non-ASCII byte escaped; unreserved characters, `/` and `*` kept."""
    return quote(value, safe=_SAFE, encoding="utf-8", errors="strict")


def query_string(pairs: Iterable[tuple[str, str]]) -> str:
    """Return `name=value&...` for `pairs`, in order, each name and value `encode_value`d."""
    return "&".join(f"{encode_value(name)}={encode_value(value)}" for name, value in pairs)


def request_target(path: str, pairs: Iterable[tuple[str, str]]) -> str:
    """Return the request line's target: `path?query` (the path must already be plain ASCII
    with nothing to escape, as the CGI paths are)."""
    if not path.startswith("/") or encode_value(path) != path:
        raise ValueError("path must be an absolute path with nothing to escape")
    return f"{path}?{query_string(pairs)}"
