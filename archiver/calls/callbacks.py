"""The call-result receiver: the PBX sends `GET <path>/<token>?sonuc=..&telefon=..&son=..` while
and after an automatic call (pbx-api.md section 6); each one is stored in the call log.

The PBX cannot sign requests, so the secret is the URL itself: the last path segment must equal
`callbacks.token` (compared in constant time; the path is never logged). A request is checked in
this order: the source address against `callbacks.allowed_sources` (403, when set), the size
(414/413), the token (constant-time), the rate limits (429), then the token's verdict (403) and
the parameters (400 with the reason). A request with a wrong token spends only its own source
address's bucket, never the shared one: a flood of guesses from many addresses cannot lock out
the PBX's real callbacks, and guessing from one address is still throttled. What passes is
stored before the reply, as one short SQLite statement, so the PBX gets its answer in about a
millisecond. Refusals are counted in a metric and logged at most once per
`_REFUSAL_LOG_EVERY_S` per HTTP status, with how many were not.

Statuses: `1`..`9` are progress codes, the documented words (ASCII, any case) final statuses;
anything else is stored as given (escaped, cut to 64 characters) with kind `unknown`, never
dropped: a firmware with a status we have not seen must not lose calls.
"""

from __future__ import annotations

import hmac
import ipaddress
import time
from collections import Counter, OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Final

import structlog
from aiohttp import web

from archiver.config import CallbacksConfig
from archiver.credentials import callbacks_token
from archiver.numbers import InvalidNumber, normalise_number
from archiver.state import CallLog, EventKind

__all__ = [
    "CALLBACK_STATS_KEY",
    "FINAL_STATUSES",
    "CallbackStats",
    "RateLimiter",
    "RefusalLog",
    "TokenBucket",
    "add_callback_routes",
    "classify_status",
    "parse_ended",
    "parse_sources",
]

log = structlog.get_logger(__name__)

# The Dial() statuses listed by the PBX's document, plus FAILED (a CDR disposition it lists).
FINAL_STATUSES: Final = frozenset(
    {
        "ANSWER", "BUSY", "NOANSWER", "CANCEL", "CONGESTION", "CHANUNAVAIL", "DONTCALL",
        "TORTURE", "INVALIDARGS", "FAILED",
    }
)  # fmt: skip
_ENDED: Final = {"1": True, "true": True, "evet": True, "0": False, "false": False}
_ENDED_NO: Final = ("hayir", "hay\u0131r")  # with and without the dotless i
_MAX_QUERY_BYTES: Final = 512
_MAX_UNKNOWN_CHARS: Final = 64
_MAX_SOURCES: Final = 10_000
# A flood of refused requests must not flood the journal: one warning per status this often.
_REFUSAL_LOG_EVERY_S: Final = 10.0


def classify_status(raw: str) -> tuple[str, EventKind]:
    """Given `sonuc`, return (status to store, kind). Never raises: an unrecognised value is
    stored escaped (printable ASCII) and cut to 64 characters, with kind `unknown`."""
    if len(raw) == 1 and raw in "123456789":
        return raw, "progress"
    # ASCII only before upper(): Unicode case mapping turns look-alikes into the real words
    # ("bu\u017fy".upper() == "BUSY"), and a look-alike is not what the PBX documents.
    word = raw.strip().upper() if raw.isascii() else ""
    if word in FINAL_STATUSES:
        return word, "final"
    return ascii(raw)[1:-1][:_MAX_UNKNOWN_CHARS], "unknown"


def parse_ended(raw: str) -> bool:
    """`son`: 1/0, true/false, evet/hayir (any case; dotless i too). Raise ValueError if not."""
    value = raw.strip().lower()
    if value in _ENDED:
        return _ENDED[value]
    if value in _ENDED_NO:
        return False
    raise ValueError("son must be 1/0, true/false or evet/hayir")


@dataclass
class TokenBucket:
    """`rate_per_s` tokens a second, at most `burst` saved up; starts full."""

    rate_per_s: float
    burst: int
    tokens: float = -1.0
    updated_s: float = 0.0

    def refill(self, now_s: float) -> None:
        if self.tokens < 0:
            self.tokens, self.updated_s = float(self.burst), now_s
            return
        self.tokens = min(self.burst, self.tokens + (now_s - self.updated_s) * self.rate_per_s)
        self.updated_s = now_s

    def wait_s(self) -> float:
        """Seconds until one token is there (0 if one is there now)."""
        return 0.0 if self.tokens >= 1 else (1 - self.tokens) / self.rate_per_s


@dataclass
class RateLimiter:
    """A token bucket per source address and one for everyone. The per-source buckets are an
    LRU of at most `max_sources` (a flood from many addresses cannot grow memory without bound;
    the global bucket still holds then).

    Hand-written (about 30 lines) rather than aiolimiter, which waits instead of refusing, or
    limits, whose in-memory storage expires keys with a timer thread; the clock is injectable.
    """

    per_source_rate_per_s: float
    per_source_burst: int
    global_rate_per_s: float
    global_burst: int
    max_sources: int = _MAX_SOURCES
    clock: Callable[[], float] = time.monotonic
    _sources: OrderedDict[str, TokenBucket] = field(default_factory=OrderedDict)
    _global: TokenBucket | None = None

    def acquire(self, source: str, *, shared: bool = True) -> float:
        """Take one token from `source`'s bucket and (if `shared`) the global one; return 0. If
        one is empty take nothing and return the seconds to wait (for Retry-After)."""
        now_s = self.clock()
        if self._global is None:
            self._global = TokenBucket(self.global_rate_per_s, self.global_burst)
        bucket = self._sources.pop(source, None) or TokenBucket(
            self.per_source_rate_per_s, self.per_source_burst
        )
        self._sources[source] = bucket
        while len(self._sources) > self.max_sources:
            self._sources.popitem(last=False)
        bucket.refill(now_s)
        buckets = [bucket, self._global] if shared else [bucket]
        self._global.refill(now_s)
        wait_s = max(each.wait_s() for each in buckets)
        if wait_s == 0:
            for each in buckets:
                each.tokens -= 1
        return wait_s


@dataclass
class CallbackStats:
    """Counts for metrics: accepted events by (kind, status) — unknown statuses count under
    `unknown` so the label set stays bounded — and refusals by HTTP status."""

    events: Counter[tuple[str, str]] = field(default_factory=Counter)
    refused: Counter[int] = field(default_factory=Counter)

    def samples(self) -> list[tuple[str, dict[str, str], int]]:
        """Every count as (metric name, labels, value), for a metrics exporter to render."""
        found = [
            ("archiver_call_results_total", {"kind": kind, "status": status}, count)
            for (kind, status), count in sorted(self.events.items())
        ]
        found += [
            ("archiver_call_results_refused_total", {"http_status": str(code)}, count)
            for code, count in sorted(self.refused.items())
        ]
        return found


CALLBACK_STATS_KEY = web.AppKey("callback_stats", CallbackStats)


@dataclass
class RefusalLog:
    """Decides which refusals are logged: the first of each HTTP status, then at most one per
    `every_s`, which carries how many were refused without a log line since."""

    every_s: float = _REFUSAL_LOG_EVERY_S
    clock: Callable[[], float] = time.monotonic
    _last_s: dict[int, float] = field(default_factory=dict)
    _quiet: Counter[int] = field(default_factory=Counter)

    def admit(self, status: int) -> int | None:
        """Return None to stay quiet, else how many refusals of `status` went unlogged."""
        now_s = self.clock()
        last_s = self._last_s.get(status)
        if last_s is not None and now_s - last_s < self.every_s:
            self._quiet[status] += 1
            return None
        self._last_s[status] = now_s
        return self._quiet.pop(status, 0)


def parse_sources(values: list[str]) -> tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...]:
    """`callbacks.allowed_sources` as networks (an address is a /32 or /128)."""
    return tuple(ipaddress.ip_network(value, strict=False) for value in values)


@dataclass(frozen=True)
class _Receiver:
    token: bytes = field(repr=False)
    calls: CallLog
    limiter: RateLimiter
    stats: CallbackStats
    allowed: tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...] = ()
    refusals: RefusalLog = field(default_factory=RefusalLog)

    async def handle(self, request: web.Request) -> web.Response:
        source = request.remote or "unknown"
        if self.allowed and not self._allowed(source):
            return self._refuse(403, "source address not in callbacks.allowed_sources", source)
        if len(request.rel_url.raw_query_string) > _MAX_QUERY_BYTES:
            return self._refuse(414, f"query longer than {_MAX_QUERY_BYTES} bytes", source)
        if request.body_exists:
            return self._refuse(413, "a callback has no body", source)
        given = request.match_info["token"].encode()
        valid = hmac.compare_digest(given, self.token)
        # A wrong token spends only its sender's own bucket (guessing stays throttled), never
        # the shared one that the PBX's real callbacks need.
        wait_s = self.limiter.acquire(source, shared=valid)
        if not valid and wait_s == 0:
            return self._refuse(403, "forbidden", source)
        if wait_s > 0:
            return self._refuse(429, "too many requests", source, retry_after_s=wait_s)
        try:
            number, status, kind, ended = _parse(request)
        except ValueError as error:
            return self._refuse(400, str(error), source)
        event = self.calls.record_event(
            number=number, status=status, kind=kind, ended=ended, source=source
        )
        self.stats.events[(kind, status if kind != "unknown" else "unknown")] += 1
        log.info(
            "call_result",
            number=number,
            status=status,
            kind=kind,
            ended=ended,
            autocall_id=event.autocall_id,
            source=source,
        )
        return web.Response(text="ok\n")

    def _allowed(self, source: str) -> bool:
        try:
            address = ipaddress.ip_address(source)
        except ValueError:
            return False
        return any(address in network for network in self.allowed)

    def _refuse(
        self, status: int, reason: str, source: str, *, retry_after_s: float = 0.0
    ) -> web.Response:
        self.stats.refused[status] += 1
        headers = {"Retry-After": str(max(1, round(retry_after_s + 0.5)))} if status == 429 else {}
        unlogged = self.refusals.admit(status)
        if unlogged is not None:
            log.warning(
                "call_result_refused",
                http_status=status,
                reason=reason,
                source=source,
                not_logged_since=unlogged,
            )
        return web.Response(status=status, text=f"{reason}\n", headers=headers)


def _one(request: web.Request, name: str) -> str:
    values = request.rel_url.query.getall(name, [])
    if len(values) != 1:
        raise ValueError(f"{name} is missing" if not values else f"{name} is given more than once")
    if not values[0]:
        raise ValueError(f"{name} is empty")
    return values[0]


def _parse(request: web.Request) -> tuple[str, str, EventKind, bool]:
    """Return (number, status, kind, ended). Raise ValueError with a reason (no input echoed)."""
    telefon = _one(request, "telefon")
    if not (telefon.isascii() and telefon.isdigit() and len(telefon) <= 20):
        raise ValueError("telefon must be 1-20 digits")
    try:
        number = normalise_number(telefon)
    except InvalidNumber:
        number = telefon  # stored as sent: the PBX is meant to send 90..., but keep what it did
    status, kind = classify_status(_one(request, "sonuc"))
    ended = parse_ended(_one(request, "son"))
    return number, status, kind, ended


def add_callback_routes(app: web.Application, cfg: CallbacksConfig, calls: CallLog) -> None:
    """Register `GET {cfg.path}/{token}` on `app` (nothing if callbacks are disabled).
    Statistics are in `app[CALLBACK_STATS_KEY]`."""
    token = callbacks_token(cfg)
    if not cfg.enabled or token is None:
        return
    stats = CallbackStats()
    app[CALLBACK_STATS_KEY] = stats
    receiver = _Receiver(
        token=token.encode(),
        calls=calls,
        limiter=RateLimiter(
            per_source_rate_per_s=cfg.per_source_rate_per_s,
            per_source_burst=cfg.per_source_burst,
            global_rate_per_s=cfg.global_rate_per_s,
            global_burst=cfg.global_burst,
        ),
        stats=stats,
        allowed=parse_sources(cfg.allowed_sources),
    )
    app.router.add_get(cfg.path + "/{token}", receiver.handle, allow_head=False)
