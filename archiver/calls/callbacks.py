"""The call-result receiver: the PBX sends `GET <path>/<token>?sonuc=..&telefon=..&son=..` while
and after an automatic call (pbx-api.md section 6); each one is stored in the call log.

The PBX cannot sign requests, so the secret is the URL itself: the last path segment must equal
`callbacks.token` (compared in constant time; the path is never logged). A request is checked in
this order: the source address against `callbacks.allowed_sources` (403, when set), the size
(414/413), the token (constant-time), the rate limits (429), then the token's verdict (403) and
the parameters (400 with the reason). A request with a wrong token spends only its own source
address's bucket, never the shared one: a flood of guesses from many addresses cannot lock out
the PBX's real callbacks, and guessing from one address is still throttled. What passes is
stored on the state's own threads (never on the event loop) before the reply, 200, in about a
millisecond; if the state database is slow or away it is kept and stored when the database
answers, and the reply is 202 within a second (`keeper`: 503 only once too many are kept).
Refusals are counted in a metric and logged at most once per
`_REFUSAL_LOG_EVERY_S` per HTTP status, with how many were not.

Statuses: `1`..`9` are progress codes, the documented words (ASCII, any case) final statuses;
anything else is stored as given (escaped, cut to 64 characters) with kind `unknown`, never
dropped: a firmware with a status we have not seen must not lose calls. The same holds for the
rest (`parse_call_result`): an empty or missing `sonuc` or `son`, a `telefon` sent as `+90…` or
left out are stored with flags naming the oddity, and answered 200; only a value outside the
printable allow-list is refused (400). Every refusal is counted with its reason.
"""

from __future__ import annotations

import hmac
import ipaddress
import time
from collections import Counter, OrderedDict
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Final

import structlog
from aiohttp import web

from archiver.calls.keeper import KeptResult, ResultKeeper
from archiver.config import CallbacksConfig
from archiver.credentials import callbacks_token
from archiver.numbers import InvalidNumber, normalise_number
from archiver.state import CallLog, EventKind, StateThreads

__all__ = [
    "CALLBACK_STATS_KEY",
    "FINAL_STATUSES",
    "REFUSAL_REASONS",
    "CallResult",
    "CallbackStats",
    "RateLimiter",
    "RefusalLog",
    "TokenBucket",
    "add_callback_routes",
    "classify_status",
    "parse_call_result",
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
_MAX_NUMBER_CHARS: Final = 32
# The `reason` label of a refusal: a fixed vocabulary, one word per check that refuses.
REFUSAL_REASONS: Final = (
    "source_not_allowed", "too_long", "has_body", "bad_token", "rate_limited",
    "control_character", "state_unavailable",
)  # fmt: skip


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
    refused: Counter[tuple[int, str]] = field(default_factory=Counter)
    flagged: Counter[str] = field(default_factory=Counter)
    kept: int = 0  # answered 202: stored later, the state database being slow or away

    def samples(self) -> list[tuple[str, dict[str, str], int]]:
        """Every count as (metric name, labels, value), for a metrics exporter to render."""
        found = [
            ("archiver_call_results_total", {"kind": kind, "status": status}, count)
            for (kind, status), count in sorted(self.events.items())
        ]
        found += [
            (
                "archiver_call_results_refused_total",
                {"http_status": str(code), "reason": word},
                count,
            )
            for (code, word), count in sorted(self.refused.items())
        ]
        found += [
            ("archiver_call_results_flagged_total", {"flag": flag}, count)
            for flag, count in sorted(self.flagged.items())
        ]
        found.append(("archiver_call_results_kept_total", {}, self.kept))
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
    keeper: ResultKeeper
    limiter: RateLimiter
    stats: CallbackStats
    allowed: tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...] = ()
    refusals: RefusalLog = field(default_factory=RefusalLog)

    async def handle(self, request: web.Request) -> web.Response:
        source = request.remote or "unknown"
        if self.allowed and not self._allowed(source):
            return self._refuse(
                403, "source address not in callbacks.allowed_sources", source, "source_not_allowed"
            )
        if len(request.rel_url.raw_query_string) > _MAX_QUERY_BYTES:
            return self._refuse(
                414, f"query longer than {_MAX_QUERY_BYTES} bytes", source, "too_long"
            )
        if request.body_exists:
            return self._refuse(413, "a callback has no body", source, "has_body")
        given = request.match_info["token"].encode()
        valid = hmac.compare_digest(given, self.token)
        # A wrong token spends only its sender's own bucket (guessing stays throttled), never
        # the shared one that the PBX's real callbacks need.
        wait_s = self.limiter.acquire(source, shared=valid)
        if not valid and wait_s == 0:
            return self._refuse(403, "forbidden", source, "bad_token")
        if wait_s > 0:
            return self._refuse(
                429, "too many requests", source, "rate_limited", retry_after_s=wait_s
            )
        try:
            query = request.rel_url.query
            result = parse_call_result({name: query.getall(name) for name in set(query)})
        except ValueError as error:
            return self._refuse(400, str(error), source, "control_character")
        if self.keeper.full():
            return self._refuse(
                503, "state database unavailable and too many results kept; send again later",
                source, "state_unavailable", retry_after_s=30.0,
            )  # fmt: skip
        label = result.status if result.kind != "unknown" else "unknown"
        self.stats.events[(result.kind, label)] += 1
        self.stats.flagged.update(result.flags)
        kept = KeptResult(
            number=result.number, status=result.status, kind=result.kind, ended=result.ended,
            source=source, flags=result.flags,
        )  # fmt: skip
        if await self.keeper.store(kept) is None:
            # The state database is slow or away: stored when it answers (see `keeper`).
            self.stats.kept += 1
            return web.Response(status=202, text="kept\n")
        return web.Response(text="ok\n")

    def _allowed(self, source: str) -> bool:
        try:
            address = ipaddress.ip_address(source)
        except ValueError:
            return False
        return any(address in network for network in self.allowed)

    def _refuse(
        self, status: int, reason: str, source: str, word: str, *, retry_after_s: float = 0.0
    ) -> web.Response:
        """Answer `status` with `reason`; count it under `word` (one of REFUSAL_REASONS)."""
        self.stats.refused[(status, word)] += 1
        retry_after = str(max(1, round(retry_after_s + 0.5)))
        headers = {"Retry-After": retry_after} if status in (429, 503) else {}
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


@dataclass(frozen=True, slots=True)
class CallResult:
    """One callback's values as they will be stored; `flags` name what was missing or odd."""

    number: str
    status: str
    kind: EventKind
    ended: bool
    flags: tuple[str, ...] = ()


def parse_call_result(query: Mapping[str, Sequence[str]]) -> CallResult:
    """Given the decoded query (name to values), return the call result to store.

    Lenient, because the PBX will not send it again: a missing or empty `sonuc` is stored as
    an empty status of kind `unknown`; `son` missing, empty or not a known word is stored as
    not ended; `telefon` is normalised as `archiver call` does (`+90…`, `0090…`, `0…`), kept as
    sent when it is not a Turkish number, and may be missing; a repeated name counts once (the
    first). Each such oddity is a flag. Other names are ignored. Raise ValueError (a reason
    that echoes no input) only for what cannot be a call result: a value outside the printable
    allow-list (a control character: tab, newline, NUL, DEL...). What is stored is escaped
    to printable ASCII and cut (statuses to 64 characters, numbers to 32)."""
    flags: list[str] = []
    values: dict[str, str | None] = {}
    for name in ("sonuc", "telefon", "son"):
        given = list(query.get(name, ()))
        if len(given) > 1:
            flags.append(f"{name}_repeated")
        if given and not given[0].isprintable():
            raise ValueError(f"{name} holds a control character")
        values[name] = given[0] if given else None
    number = _number(values["telefon"], flags)
    status, kind = _status(values["sonuc"], flags)
    ended = _ended(values["son"], flags)
    return CallResult(number, status, kind, ended, tuple(flags))


def _number(raw: str | None, flags: list[str]) -> str:
    if raw is None or not raw.strip():
        flags.append("telefon_missing")
        return ""
    # A `+` the PBX left unescaped arrives decoded as a space (form encoding): it was a `+`.
    text = "+" + raw.strip() if raw.startswith(" ") else raw.strip()
    try:
        return normalise_number(text)
    except InvalidNumber:
        flags.append("telefon_not_turkish")
        return ascii(text)[1:-1][:_MAX_NUMBER_CHARS]


def _status(raw: str | None, flags: list[str]) -> tuple[str, EventKind]:
    if raw is None or not raw.strip():
        flags.append("sonuc_missing" if raw is None else "sonuc_empty")
        return "", "unknown"
    return classify_status(raw)


def _ended(raw: str | None, flags: list[str]) -> bool:
    if raw is None:
        flags.append("son_missing")
        return False
    if not raw.strip():
        flags.append("son_empty")  # sent while the call is in progress
        return False
    try:
        return parse_ended(raw)
    except ValueError:
        flags.append("son_unknown")
        return False


def add_callback_routes(
    app: web.Application, cfg: CallbacksConfig, calls: CallLog, state: StateThreads
) -> None:
    """Register `GET {cfg.path}/{token}` on `app` (nothing if callbacks are disabled).
    Results are stored on the state's threads `state`, kept while it is away (`keeper`);
    the kept ones get `drain_s` when the app is cleaned up. Statistics are in
    `app[CALLBACK_STATS_KEY]`."""
    token = callbacks_token(cfg)
    if not cfg.enabled or token is None:
        return
    stats = CallbackStats()
    app[CALLBACK_STATS_KEY] = stats
    keeper = ResultKeeper(calls, state)

    async def close_keeper(_: web.Application) -> None:
        await keeper.close()

    app.on_cleanup.append(close_keeper)
    receiver = _Receiver(
        token=token.encode(),
        keeper=keeper,
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
