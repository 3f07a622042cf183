"""The simulated auto-dialer: `autocalls.cgi` (pbx-api.md sections 5 and 6).

A valid request is answered at once; the call then plays on the simulator's loop: progress
callbacks (`sonuc=1`, `2`, ...) and a status from the configured mix, per attempt, up to `mr`
retries `rt` seconds apart (scaled by `time_scale`), with `son` set on the last event only. An
answered call ends after `answer_duration_s` (scaled) and then a recording of it appears in the
corpus, as on a PBX that writes the file at hang-up. Outcomes repeat for a seed.
"""

from __future__ import annotations

import asyncio
import logging
import random
import re
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Final

import aiohttp
from yarl import URL

from archiver.lab.simulator.corpus import Corpus

__all__ = ["DEFAULT_OUTCOMES", "DialedCall", "Dialer", "parse_outcomes", "validate_autocall"]

DEFAULT_OUTCOMES: Final = "ANSWER=6,NOANSWER=2,BUSY=2,CONGESTION=1,CHANUNAVAIL=1,CANCEL=1"
SON_STYLES: Final = {"1": ("1", "0"), "true": ("true", "false"), "evet": ("evet", "hayir")}
_PARAMS: Final = ("action", "number", "mr", "rt", "dp", "dest", "detail", "datetime")
_DATETIME_RE: Final = re.compile(r"-1|[0-9]{4}-[0-9]{2}-[0-9]{2} [0-9]{2}:[0-9]{2}:[0-9]{2}")
_DETAIL_RE: Final = re.compile(r"[A-Za-z0-9 _.,:@+-]{0,64}")
_OUTCOME_RE: Final = re.compile(r"(?P<status>[A-Z0-9]{1,20})=(?P<weight>[0-9]{1,4})")
_MAX_WAIT_S: Final = 600.0
_log = logging.getLogger(__name__)


def parse_outcomes(spec: str) -> list[tuple[str, int]]:
    """`ANSWER=6,BUSY=1` → [("ANSWER", 6), ("BUSY", 1)]. Raise ValueError if malformed or if
    every weight is 0. Any upper-case word is allowed, so an unknown status can be played."""
    outcomes = []
    for part in spec.split(","):
        match = _OUTCOME_RE.fullmatch(part.strip())
        if match is None:
            raise ValueError(f"dial outcome {part!r} is not STATUS=WEIGHT")
        outcomes.append((match["status"], int(match["weight"])))
    if sum(weight for _, weight in outcomes) == 0:
        raise ValueError("dial outcomes need a weight above 0")
    return outcomes


def validate_autocall(query: dict[str, list[str]]) -> str | None:
    """Return why an autocalls.cgi query (credentials removed) is refused, or None if valid:
    exactly the documented parameters, once each; `number` digits; `mr rt dp dest` integers;
    `detail` plain text; `datetime` -1 or `YYYY-MM-DD HH:MM:SS`."""
    if set(query) != set(_PARAMS) or any(len(values) != 1 for values in query.values()):
        return "expected action number mr rt dp dest detail datetime, once each"
    one = {name: values[0] for name, values in query.items()}
    if one["action"] != "call":
        return "action must be call"
    if not re.fullmatch(r"[0-9]{3,20}", one["number"]):
        return "number must be 3-20 digits"
    if not all(re.fullmatch(r"[0-9]{1,5}", one[name]) for name in ("mr", "rt", "dp", "dest")):
        return "mr, rt, dp and dest must be integers"
    if not _DETAIL_RE.fullmatch(one["detail"]):
        return "detail has characters a PBX would not take"
    if not _DATETIME_RE.fullmatch(one["datetime"]):
        return "datetime must be -1 or YYYY-MM-DD HH:MM:SS"
    return None


@dataclass
class DialedCall:
    """What the simulator did with one request: the callbacks it sent, in order, as
    (sonuc, son) pairs, and the recording it made (if answered)."""

    number: str
    sent: list[tuple[str, str]] = field(default_factory=list)
    failed_sends: int = 0
    recording: str | None = None
    done: asyncio.Event = field(default_factory=asyncio.Event)


@dataclass
class Dialer:
    """Plays autocalls against `callback_url` (None: calls are accepted but send nothing)."""

    corpus: Corpus
    seed: int
    callback_url: str | None
    outcomes: list[tuple[str, int]]
    step_ms: int = 200
    time_scale: float = 1.0
    answer_duration_s: int = 3
    son_style: str = "1"
    calls: list[DialedCall] = field(default_factory=list)
    _tasks: set[asyncio.Task[None]] = field(default_factory=set)
    _session: aiohttp.ClientSession | None = None

    def start(self, number: str, max_retries: int, retry_interval_s: int, when: str) -> DialedCall:
        """Start playing one call on the running loop; return its record."""
        call = DialedCall(number=number)
        self.calls.append(call)
        task = asyncio.create_task(
            self._play(len(self.calls), call, max_retries, retry_interval_s, when)
        )
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return call

    async def close(self) -> None:
        """Cancel calls still playing and close the HTTP client."""
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        if self._session is not None:
            await self._session.close()

    async def _play(
        self, seq: int, call: DialedCall, max_retries: int, retry_interval_s: int, when: str
    ) -> None:
        try:
            await asyncio.sleep(self._delay_until(when))
            for attempt in range(max_retries + 1):
                rng = random.Random(f"archiver-sim:{self.seed}:dial:{seq}:{attempt}")
                statuses = [status for status, _ in self.outcomes]
                outcome = rng.choices(statuses, [w for _, w in self.outcomes])[0]
                for code in range(1, rng.randint(1, 3) + 1):
                    await self._send(call, str(code), ended=False)
                    await asyncio.sleep(self.step_ms / 1000)
                last = outcome == "ANSWER" or attempt == max_retries
                if outcome == "ANSWER":
                    await asyncio.sleep(self.answer_duration_s * self.time_scale)
                await self._send(call, outcome, ended=last)
                if outcome == "ANSWER":
                    await asyncio.sleep(self.step_ms / 1000)  # the file appears a little later
                    call.recording = self._record(call.number)
                if last:
                    return
                await asyncio.sleep(min(retry_interval_s * self.time_scale, _MAX_WAIT_S))
        finally:
            call.done.set()

    def _delay_until(self, when: str) -> float:
        if when == "-1":
            return 0.0
        local = datetime.strptime(when, "%Y-%m-%d %H:%M:%S").replace(tzinfo=self.corpus.tz)
        wait_s = (local - datetime.now(self.corpus.tz)).total_seconds()
        return min(max(wait_s, 0.0) * self.time_scale, _MAX_WAIT_S)

    def _record(self, number: str) -> str:
        # The call has just ended, so it started answer_duration_s ago (in the name's time).
        ended = datetime.now(self.corpus.tz).replace(microsecond=0)
        started = ended - timedelta(seconds=self.answer_duration_s)
        rec = self.corpus.add(
            caller="100", callee=number, duration_s=self.answer_duration_s, started_local=started
        )
        return rec.name

    async def _send(self, call: DialedCall, status: str, *, ended: bool) -> None:
        son = SON_STYLES[self.son_style][0 if ended else 1]
        call.sent.append((status, son))
        if self.callback_url is None:
            return
        if self._session is None:
            self._session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10))
        url = URL(self.callback_url).update_query(sonuc=status, telefon=call.number, son=son)
        try:
            async with self._session.get(url) as response:
                await response.read()
                if response.status != 200:
                    call.failed_sends += 1
                    _log.warning("callback answered HTTP %s", response.status)
        except (aiohttp.ClientError, TimeoutError) as error:
            # A PBX does not retry a callback it could not deliver; neither do we.
            call.failed_sends += 1
            _log.warning("callback not delivered: %s", type(error).__name__)
