"""Our claim on one recording in a shared state: taken, renewed while the work goes on, checked
before the upload."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

import structlog

from archiver.state import Ledger, StateThreads, StateUnavailable

__all__ = ["Lease", "LeaseLost"]

log = structlog.get_logger("archiver.pipeline.daemon")


class LeaseLost(Exception):
    """Another worker took this recording over (our lease ran out): stop, write nothing."""


class Lease:
    """Our claim on one recording, renewed every third of `lease_s` while the work goes on."""

    def __init__(
        self, ledger: Ledger, state: StateThreads, key: str, owner: str, lease_s: float
    ) -> None:
        self._ledger = ledger
        self._state = state
        self._key = key
        self._owner = owner
        self._lease_s = lease_s
        self.lost = False

    async def check(self) -> None:
        """Raise LeaseLost if another worker has taken the recording over."""
        if self.lost or not await self._renew():
            self.lost = True
            raise LeaseLost(self._key)

    @contextlib.asynccontextmanager
    async def renewed(self) -> AsyncIterator[None]:
        renewer = asyncio.create_task(self._renew_until_cancelled())
        try:
            yield
        finally:
            renewer.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await renewer

    async def _renew_until_cancelled(self) -> None:
        while not self.lost:
            await asyncio.sleep(self._lease_s / 3)
            try:
                self.lost = not await self._renew()
            except StateUnavailable as error:
                # The lease may run out meanwhile; `check` before the upload decides.
                log.warning("lease_not_renewed", reason=error.reason)

    async def _renew(self) -> bool:
        return await self._state.run(self._ledger.renew, self._key, self._owner, self._lease_s)
