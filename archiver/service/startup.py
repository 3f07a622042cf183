"""The daemon as systemd sees it: start-up checks, READY, STATUS, the watchdog and STOPPING.

`archiver run` (Type=notify) tells systemd it is ready only once its configuration is valid, S3
answered and every PBX was asked for one listing. From then on a small task pings the watchdog at
half of WatchdogSec= while the main loop's heartbeat is fresh (the loop beats at every poll and
every stage of every recording, so a long drain keeps it fresh but a stuck loop does not), and
refreshes the one-line STATUS that `systemctl status archiver` shows.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Mapping
from datetime import datetime
from zoneinfo import ZoneInfo

import structlog

from archiver.notify import Notifier, watchdog_interval_s
from archiver.pbx import PbxAuthError, PbxClient, PbxError, date_pattern
from archiver.service.http import Health
from archiver.service.metrics import Metrics

__all__ = ["Service", "check_pbxs"]

log = structlog.get_logger(__name__)

# At most this long per PBX for the start-up listing: the unit's TimeoutStartSec= must cover it.
STARTUP_CHECK_TIMEOUT_S = 60.0
_STATUS_EVERY_S = 5.0


async def check_pbxs(clients: Mapping[str, PbxClient]) -> list[str]:
    """Ask every PBX for today's listing once, without retries and within
    STARTUP_CHECK_TIMEOUT_S. Return the PBXs that refused our credentials (nothing later can fix
    that); an unreachable PBX is only logged, since the poll loop retries it."""

    async def check(client: PbxClient) -> str | None:
        today = datetime.now(ZoneInfo(client.cfg.timezone)).date()
        try:
            async with asyncio.timeout(STARTUP_CHECK_TIMEOUT_S):
                listing = await client.find(date_pattern(today))
        except PbxAuthError as error:
            log.error("pbx_check_failed", pbx=client.name, reason=error.reason)
            return client.name
        except PbxError as error:
            log.warning("pbx_check_failed", pbx=client.name, reason=error.reason)
        except TimeoutError:
            log.warning("pbx_check_failed", pbx=client.name, reason="timed out")
        else:
            log.info("pbx_check_ok", pbx=client.name, listed_today=len(listing.lines))
        return None

    results = await asyncio.gather(*(check(client) for client in clients.values()))
    return [name for name in results if name is not None]


class Service:
    """Keeps systemd informed about one `archiver run`. Every method is a no-op outside systemd
    (no $NOTIFY_SOCKET), so the daemon behaves the same everywhere."""

    def __init__(self, notifier: Notifier, health: Health, metrics: Metrics) -> None:
        self.notifier = notifier
        self.health = health
        self.metrics = metrics
        self.watchdog_s = watchdog_interval_s()
        self._stopping_sent = False

    def status_line(self) -> str:
        """One line: archived today, backlog, last poll (and which PBX fails, if any)."""
        progress = self.metrics.progress
        backlog = sum(self.metrics.backlog.values())
        times = [p.last_listing_at for p in progress.values() if p.last_listing_at is not None]
        refused = self.metrics.refused_pbxs()
        failing = sorted(
            name for name, p in progress.items() if p.last_poll_ok is False and name not in refused
        )
        last = f"last poll {max(times):%H:%M:%S}" if times else "no poll yet"
        if failing:
            last += f" (listing failed: {', '.join(failing)})"
        line = f"archived today {self.metrics.today.archived}, backlog {backlog}, {last}"
        if refused:
            # First, so that `systemctl status` shows it even when the line is cut.
            line = f"credentials refused by PBX {', '.join(refused)}; {line}"
        return line

    def ready(self) -> None:
        """Tell systemd the start-up checks are done."""
        self.notifier.ready(self.status_line())
        log.info("ready", notify=self.notifier.enabled, watchdog_s=self.watchdog_s)

    @contextlib.asynccontextmanager
    async def running(self, stop: asyncio.Event) -> AsyncIterator[None]:
        """While the body runs: ping the watchdog and refresh STATUS; when `stop` is set (the
        first SIGTERM), or the body ends, send STOPPING=1."""
        tasks = [asyncio.create_task(self._pulse()), asyncio.create_task(self._on_stop(stop))]
        for task in tasks:
            task.add_done_callback(_log_if_failed)
        try:
            yield
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)  # each logged as it ended
            self._stopping()

    async def _pulse(self) -> None:
        period_s = _STATUS_EVERY_S
        if self.watchdog_s is not None:
            period_s = min(period_s, self.watchdog_s / 2)
        sent = ""
        while True:
            if self.watchdog_s is not None and self.health.alive():
                self.notifier.watchdog()
            line = self.status_line()
            if line != sent:
                self.notifier.status(line)
                sent = line
            await asyncio.sleep(period_s)

    async def _on_stop(self, stop: asyncio.Event) -> None:
        await stop.wait()
        self._stopping()

    def _stopping(self) -> None:
        if not self._stopping_sent:
            self._stopping_sent = True
            self.notifier.stopping(f"stopping; {self.status_line()}")


def _log_if_failed(task: asyncio.Task[None]) -> None:
    """Log a helper task's failure as it happens (a dead pulse means no more watchdog pings)."""
    if not task.cancelled() and (error := task.exception()) is not None:
        log.error("service_task_failed", reason=f"{type(error).__name__}: {error}")
