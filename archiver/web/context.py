"""What every handler of `archiver web` shares: the configuration, the state (SQLite or
PostgreSQL, used from worker threads), the S3 store, users, sessions and the login throttle; and
the small helpers that turn a request into a user, an address or an access-log row.

Blocking work runs in separate bounded thread pools, so that no kind of request can take the
threads another needs: database statements (`in_db`, on the state's own threads, the async face
`archiver.state.aio`), S3 reads for audio (`in_s3`), password hashes (`in_hash`) and zip
writers (`zip_threads`, one per zip admitted by `zips`)."""

from __future__ import annotations

import asyncio
import base64
import binascii
import ipaddress
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Final, ParamSpec, TypeVar
from zoneinfo import ZoneInfo

import jinja2
import structlog
from aiohttp import web

from archiver.config import Config
from archiver.s3 import S3Store
from archiver.state import (
    AccessAction,
    AccessEvent,
    AccessLog,
    AccessOutcome,
    Catalogue,
    Ledger,
    State,
)
from archiver.web.auth import LoginThrottle, Sessions, VerifiedCache
from archiver.web.connections import ConnectionCaps
from archiver.web.directory import Directory, open_directory
from archiver.web.hash_queue import HASH_SOURCE, FairQueue
from archiver.web.integrity import IntegrityNotes
from archiver.web.limits import PerUserLimit
from archiver.web.roles import Access, Roles
from archiver.web.users import USERNAME_RE, Users

__all__ = [
    "CONTEXT_KEY",
    "HASH_THREADS",
    "SESSION_COOKIE",
    "USER_KEY",
    "WebContext",
    "basic_credentials",
    "client_address",
]

log = structlog.get_logger("archiver.web")

SESSION_COOKIE: Final = "archiver_session"
P = ParamSpec("P")
T = TypeVar("T")
# bcrypt releases the GIL: two hashes at once use both cores of a small server, no more, so a
# flood of logins never takes the CPU that streams audio.
HASH_THREADS: Final = 2
_S3_THREADS: Final = 16


@dataclass
class WebContext:
    """Shared by every request. The state is used from worker threads (`in_db`; both backends
    are thread-safe), so the event loop never waits on a query."""

    cfg: Config
    state: State
    store: S3Store
    users: Users
    templates: jinja2.Environment
    sessions: Sessions = field(init=False)
    throttle: LoginThrottle = field(init=False)
    verified: VerifiedCache = field(init=False)
    # Set by `running`: the open connections (the chaos script and tests read it).
    connections: ConnectionCaps | None = field(init=False, default=None)
    zips: PerUserLimit = field(init=False)
    searches: PerUserLimit = field(init=False)
    catalogue: Catalogue = field(init=False)
    access_log: AccessLog = field(init=False)
    ledger: Ledger = field(init=False)
    roles: Roles = field(init=False)
    directory: Directory | None = field(init=False)
    # Calls whose whole-file stream did not match the recorded MD5 (archiver.web.integrity).
    integrity: IntegrityNotes = field(init=False)
    timezone: ZoneInfo = field(init=False)
    # S3 reads are blocking boto3 calls: their own threads, so a slow read never delays a search.
    s3_threads: ThreadPoolExecutor = field(init=False)
    # Each admitted zip has a writer thread of its own here (never one of the audio threads).
    zip_threads: ThreadPoolExecutor = field(init=False)
    _hash_threads: ThreadPoolExecutor = field(init=False)
    hash_queue: FairQueue = field(init=False)

    def __post_init__(self) -> None:
        web_cfg = self.cfg.web
        self.sessions = Sessions(ttl_s=web_cfg.session_ttl_s)
        self.throttle = LoginThrottle(
            max_failures=web_cfg.login_max_failures,
            max_failures_per_address=web_cfg.login_max_failures_per_address,
            window_s=web_cfg.login_window_s,
        )
        self.verified = VerifiedCache()
        self.zips = PerUserLimit(
            per_user=web_cfg.zip_max_per_user, total=web_cfg.zip_max_concurrent
        )
        self.searches = PerUserLimit(
            per_user=web_cfg.search_max_per_user, total=web_cfg.search_max_concurrent
        )
        self.catalogue = self.state.catalogue
        self.access_log = self.state.access_log
        self.ledger = self.state.ledger
        self.roles = Roles(web_cfg)
        self.directory = open_directory(web_cfg.ldap)
        self.integrity = IntegrityNotes()
        self.timezone = ZoneInfo(web_cfg.timezone or self.cfg.pbx[0].timezone)
        self.s3_threads = ThreadPoolExecutor(_S3_THREADS, thread_name_prefix="web-s3")
        self.zip_threads = ThreadPoolExecutor(
            web_cfg.zip_max_concurrent, thread_name_prefix="web-zip"
        )
        self._hash_threads = ThreadPoolExecutor(HASH_THREADS, thread_name_prefix="web-hash")
        self.hash_queue = FairQueue(slots=HASH_THREADS, per_source=web_cfg.login_max_pending)

    async def in_db(self, call: Callable[P, T], *args: P.args, **kwargs: P.kwargs) -> T:
        """Run `call` on the state's own threads (`archiver.state.aio`, the one async face the
        pipeline and the callback receiver use too)."""
        return await self.state.aio.run(call, *args, **kwargs)

    async def in_s3(self, call: Callable[P, T], *args: P.args, **kwargs: P.kwargs) -> T:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self.s3_threads, lambda: call(*args, **kwargs))

    async def in_hash(self, call: Callable[P, T], *args: P.args, **kwargs: P.kwargs) -> T:
        """Run a password check on the hash threads, in its client address's turn
        (`HASH_SOURCE`, set by the login flow)."""
        loop = asyncio.get_running_loop()
        async with self.hash_queue.slot(HASH_SOURCE.get()):
            return await loop.run_in_executor(self._hash_threads, lambda: call(*args, **kwargs))

    def close(self) -> None:
        self.s3_threads.shutdown(wait=False, cancel_futures=True)
        self.zip_threads.shutdown(wait=False, cancel_futures=True)
        self._hash_threads.shutdown(wait=False, cancel_futures=True)
        self.state.close()

    def is_admin(self, username: str) -> bool:
        return self.roles.access(username).is_admin

    def access(self, request: web.Request) -> Access:
        """The role and scope of the request's user (set by the login guard)."""
        return self.roles.access(request[USER_KEY])

    async def record(
        self,
        request: web.Request,
        *,
        username: str,
        action: AccessAction,
        outcome: AccessOutcome = "ok",
        object_key: str | None = None,
        byte_range: str | None = None,
        detail: str | None = None,
        item_count: int | None = None,
        object_keys: tuple[str, ...] = (),
    ) -> None:
        """One access-log row and one log event (`login` or `recording_accessed`)."""
        source = client_address(request, self.cfg.web.trusted_proxies)
        event = AccessEvent(
            at=datetime.now(UTC),
            username=username,
            action=action,
            outcome=outcome,
            source=source,
            object_key=object_key,
            byte_range=byte_range,
            detail=detail,
            item_count=item_count,
            object_keys=object_keys,
        )
        await self.in_db(self.access_log.record, event)
        # A hostile user name or header shows as what was sent, never as control codes.
        fields = {"user": _printable(username[:64]), "source": _printable(source),
                  "outcome": outcome}  # fmt: skip
        if action == "login":
            log.info("login", **fields, detail=detail)
        else:
            log.info(
                "recording_accessed",
                **fields,
                action=action,
                key=object_key,
                range=None if byte_range is None else _printable(byte_range[:100]),
                detail=None if detail is None else _printable(detail[:200]),
                count=item_count,
            )


CONTEXT_KEY: Final = web.AppKey("context", WebContext)
USER_KEY: Final = web.RequestKey("archiver_user", str)


def _printable(text: str) -> str:
    """`text` with anything but printable ASCII escaped (as `ascii()` does, without quotes)."""
    return text if text.isascii() and text.isprintable() else ascii(text)[1:-1]


def client_address(request: web.Request, trusted_proxies: list[str]) -> str:
    """The client's address: the peer's, or, when the peer is a trusted proxy, the last address
    of X-Forwarded-For that is a valid IP (the one the proxy itself added)."""
    peer = request.remote or "?"
    if peer in trusted_proxies:
        forwarded = request.headers.get("X-Forwarded-For", "")
        candidate = forwarded.split(",")[-1].strip()
        try:
            return str(ipaddress.ip_address(candidate))
        except ValueError:
            return peer
    return peer


def basic_credentials(request: web.Request) -> tuple[str, str] | None:
    """The (name, password) of an `Authorization: Basic` header, or None if there is none or it
    is malformed (never raises: a hostile header is just not a login)."""
    header = request.headers.get("Authorization", "")
    scheme, _, encoded = header.partition(" ")
    if scheme.lower() != "basic" or not encoded or len(encoded) > 1024:
        return None
    try:
        decoded = base64.b64decode(encoded.strip(), validate=True).decode("utf-8")
    except (binascii.Error, UnicodeDecodeError):
        return None
    name, sep, password = decoded.partition(":")
    if not sep or USERNAME_RE.fullmatch(name) is None:
        return None
    return name, password
