"""A response body read with a minimum transfer rate.

aiohttp's `sock_read` timeout restarts with every byte, so a server that sends one byte every
0.8 s keeps a request alive for ever. `chunks` also demands at least `min_bytes_per_s` over
every full `window_s`; the overall deadline of a request is the client's (`asyncio.timeout`).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass

import aiohttp

__all__ = ["TooSlow", "TransferFloor", "chunks"]


class TooSlow(Exception):
    """Fewer bytes than the floor arrived in one window; `reason` is safe to log."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


@dataclass(frozen=True, slots=True)
class TransferFloor:
    """At least `min_bytes_per_s` on average over every full `window_s`."""

    min_bytes_per_s: float
    window_s: float


async def chunks(response: aiohttp.ClientResponse, floor: TransferFloor) -> AsyncIterator[bytes]:
    """Yield the body's bytes as they arrive. Raise `TooSlow` at the end of a window in which
    fewer than `min_bytes_per_s * window_s` arrived (a body that ends inside a window is fine)."""
    loop = asyncio.get_running_loop()
    needed = floor.min_bytes_per_s * floor.window_s
    window_end = loop.time() + floor.window_s
    received = 0
    while True:
        chunk: bytes | None = None
        try:
            async with asyncio.timeout_at(window_end):
                chunk = await response.content.readany()
        except TimeoutError:
            pass  # the window is over; readany is safe to cancel (nothing is consumed)
        if chunk == b"":
            return
        if chunk:
            received += len(chunk)
            yield chunk
        if loop.time() >= window_end:
            if received < needed:
                raise TooSlow(
                    f"slower than {floor.min_bytes_per_s:g} B/s ({received} B in "
                    f"{floor.window_s:g} s)"
                )
            received = 0
            window_end = loop.time() + floor.window_s
