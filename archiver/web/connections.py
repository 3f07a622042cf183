"""Connections to `archiver web`, bounded: at most `max_connections` open at once and
`max_connections_per_address` from one client address. A connection beyond a cap is answered
`503` with Retry-After and closed before anything of it is read, so a flood of idle or half-sent
requests can neither exhaust the descriptors nor starve the users already connected. (The time
limits for reading a request are aiohttp's keep-alive timer, which closes a connection whose
request has not fully arrived, and the body deadline in `middleware.py`.)

A trusted proxy's connections count only toward the total: behind nginx every user shares its
address, and the proxy is the place for per-client connection limits.
"""

from __future__ import annotations

import asyncio
import resource
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Final

import structlog

__all__ = [
    "ConnectionCaps",
    "GuardedProtocol",
    "descriptors_needed",
    "ensure_descriptors",
    "guarded",
]

log = structlog.get_logger("archiver.web")

_REFUSAL: Final = (
    b"HTTP/1.1 503 Service Unavailable\r\nRetry-After: 5\r\nContent-Type: text/plain\r\n"
    b"Content-Length: 21\r\nConnection: close\r\n\r\ntoo many connections\n"
)
# Descriptors besides client connections: S3 and database connections, the state file and its
# WAL, logs, the listening socket, Python's own. Measured by scripts/chaos-web (see README).
_RESERVE_FDS: Final = 256


@dataclass
class ConnectionCaps:
    """Open connections, in total and per address. Used from the event loop only."""

    max_total: int
    max_per_address: int
    exempt: frozenset[str] = frozenset()
    _open: dict[str, int] = field(default_factory=dict)
    total: int = 0
    refused: int = 0

    def admit(self, address: str) -> bool:
        mine = self._open.get(address, 0)
        limited = address not in self.exempt and mine >= self.max_per_address
        if self.total >= self.max_total or limited:
            self.refused += 1
            return False
        self._open[address] = mine + 1
        self.total += 1
        return True

    def release(self, address: str) -> None:
        left = self._open[address] - 1
        if left:
            self._open[address] = left
        else:
            del self._open[address]
        self.total -= 1


class GuardedProtocol(asyncio.Protocol):
    """Stands in front of aiohttp's request handler for one connection: counts it, or answers
    503 and closes it when a cap is reached (the handler never sees it then)."""

    def __init__(self, inner: asyncio.Protocol, caps: ConnectionCaps) -> None:
        self._inner = inner
        self._caps = caps
        self._address: str | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        peer = transport.get_extra_info("peername")
        address = str(peer[0]) if isinstance(peer, tuple) and peer else "?"
        if not self._caps.admit(address):
            if self._caps.refused % 100 == 1:  # one line per hundred: a flood must not flood logs
                log.warning("web_connection_refused", source=address, open=self._caps.total,
                            refused=self._caps.refused)  # fmt: skip
            if isinstance(transport, asyncio.WriteTransport):
                transport.write(_REFUSAL)
            transport.close()
            return
        self._address = address
        self._inner.connection_made(transport)

    def connection_lost(self, exc: Exception | None) -> None:
        if self._address is None:
            return
        self._caps.release(self._address)
        self._address = None
        self._inner.connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        if self._address is not None:
            self._inner.data_received(data)

    def eof_received(self) -> bool | None:
        return self._inner.eof_received() if self._address is not None else None

    def pause_writing(self) -> None:
        if self._address is not None:
            self._inner.pause_writing()

    def resume_writing(self) -> None:
        if self._address is not None:
            self._inner.resume_writing()


def guarded(
    factory: Callable[[], asyncio.Protocol], caps: ConnectionCaps
) -> Callable[[], GuardedProtocol]:
    """A protocol factory for `loop.create_server` that guards what `factory` makes."""
    return lambda: GuardedProtocol(factory(), caps)


def descriptors_needed(max_connections: int) -> int:
    return max_connections + _RESERVE_FDS


def ensure_descriptors(max_connections: int) -> int:
    """Raise this process's soft RLIMIT_NOFILE to what `max_connections` needs (up to the hard
    limit). Return the connections it allows: `max_connections`, or fewer (logged) when the hard
    limit is too low; then raise LimitNOFILE in the unit."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    needed = descriptors_needed(max_connections)
    if soft != resource.RLIM_INFINITY and soft < needed:
        target = needed if hard == resource.RLIM_INFINITY else min(needed, hard)
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
        soft = target
    if soft == resource.RLIM_INFINITY or soft >= needed:
        return max_connections
    allowed = max(8, soft - _RESERVE_FDS)
    log.warning("web_descriptors_short", max_connections=max_connections, allowed=allowed,
                nofile=soft, fix=f"LimitNOFILE={needed} in the unit")  # fmt: skip
    return allowed
