"""systemd's notify protocol (sd_notify): READY, STATUS, WATCHDOG and STOPPING datagrams.

Hand-written on purpose: the protocol is one datagram of `KEY=VALUE` lines on the AF_UNIX socket
named by $NOTIFY_SOCKET (sd_notify(3)). `systemd-python` needs libsystemd's headers and a C build
on every host, and `sdnotify` (the pure-Python one) has been unmaintained since 2018 and drops
abstract-namespace sockets' errors silently. Twenty lines that tests drive over a real socket are
the better trade.

Outside systemd (no $NOTIFY_SOCKET) every call is a no-op that returns False.
"""

from __future__ import annotations

import os
import socket
from dataclasses import dataclass

import structlog

__all__ = ["Notifier", "watchdog_interval_s"]

log = structlog.get_logger(__name__)


def watchdog_interval_s(env: dict[str, str] | None = None, pid: int | None = None) -> float | None:
    """The watchdog period systemd expects (WatchdogSec=), from $WATCHDOG_USEC, in seconds; None
    when there is no watchdog or it is meant for another process ($WATCHDOG_PID)."""
    env = dict(os.environ) if env is None else env
    usec = env.get("WATCHDOG_USEC", "")
    if not usec.isdigit() or int(usec) == 0:
        return None
    owner = env.get("WATCHDOG_PID", "")
    if owner and owner != str(os.getpid() if pid is None else pid):
        return None
    return int(usec) / 1_000_000


@dataclass
class Notifier:
    """Sends notify datagrams to `address` (a path, or `@name` for the abstract namespace)."""

    address: str | None

    @classmethod
    def from_environment(cls) -> Notifier:
        """Read $NOTIFY_SOCKET and remove it (and the watchdog variables) from the environment,
        so ffmpeg and other children cannot speak for the daemon (sd_notify's unset_environment).
        """
        address = os.environ.pop("NOTIFY_SOCKET", None) or None
        return cls(address)

    @property
    def enabled(self) -> bool:
        return self.address is not None

    def send(self, **fields: str | int) -> bool:
        """Send one datagram of `KEY=value` lines; return whether it was sent. Never raises: a
        lost notification must not stop the daemon (systemd's timeouts will tell)."""
        if self.address is None:
            return False
        lines = []
        for key, value in fields.items():
            text = str(value).replace("\n", " ")  # one field per line: a newline would split it
            lines.append(f"{key}={text}")
        target = "\0" + self.address[1:] if self.address.startswith("@") else self.address
        try:
            with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as sock:
                sock.sendto("\n".join(lines).encode("utf-8"), target)
        except OSError as error:
            log.warning("sd_notify_failed", error=error.strerror or type(error).__name__)
            return False
        return True

    def ready(self, status: str) -> bool:
        return self.send(READY=1, STATUS=status, MAINPID=os.getpid())

    def status(self, status: str) -> bool:
        return self.send(STATUS=status)

    def watchdog(self) -> bool:
        return self.send(WATCHDOG=1)

    def stopping(self, status: str) -> bool:
        return self.send(STOPPING=1, STATUS=status)
