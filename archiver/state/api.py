"""The one state interface: `State`, and `open_state(cfg)` choosing its backend.

The daemon, the CLI commands and the web ask `open_state` for the configured state and use its
parts (`ledger`, `calls`, `catalogue`, `access_log`) without knowing where they live: the SQLite
file `[state] path` (one host, the default) or the PostgreSQL database `[state] url` (any number
of workers on any hosts).
Both backends run the same table code over `archiver.state.db.Db`; what only PostgreSQL can give
(request slots held across workers) is `pbx_gate`, None on SQLite.
"""

from __future__ import annotations

import os
import secrets
import socket
from typing import Protocol

from archiver.config import Config, StateConfig
from archiver.credentials import state_password
from archiver.logs import register_secret
from archiver.state.access import AccessLog
from archiver.state.aio import StateThreads
from archiver.state.base import BaseState, RequestGate, SqliteState
from archiver.state.calls import CallLog
from archiver.state.catalogue import Catalogue
from archiver.state.db import Dialect
from archiver.state.destructions import DestructionLog
from archiver.state.fixity import Fixity
from archiver.state.holds import Holds
from archiver.state.ledger import Ledger
from archiver.state.migrate import open_database
from archiver.state.pg_state import open_postgres

__all__ = [
    "BaseState",
    "RequestGate",
    "SqliteState",
    "State",
    "free_dead_local_leases",
    "open_state",
    "worker_id",
]


class State(Protocol):
    """Everything archiver remembers, behind one interface for both backends."""

    @property
    def backend(self) -> Dialect: ...

    @property
    def where(self) -> str:
        """Where the state lives, for messages (a path, or a URL without its password)."""
        ...

    @property
    def ledger(self) -> Ledger: ...

    @property
    def calls(self) -> CallLog: ...

    @property
    def catalogue(self) -> Catalogue:
        """The archived recordings, searchable (`archiver web`)."""
        ...

    @property
    def access_log(self) -> AccessLog:
        """Who played or downloaded which recording, and every login."""
        ...

    @property
    def aio(self) -> StateThreads:
        """The async face: `await state.aio.run(state.ledger.claim, ...)` from a coroutine
        runs the call on the state's own threads (`archiver.state.aio`)."""
        ...

    @property
    def holds(self) -> Holds:
        """Legal holds: recordings kept past their retention period for a case."""
        ...

    @property
    def destructions(self) -> DestructionLog:
        """What the retention code destroyed (hash-chained), what it is destroying, its runs."""
        ...

    @property
    def fixity(self) -> Fixity:
        """What each archived object's bytes should be (size, MD5, the original's SHA-256)."""
        ...

    def pbx_gate(self, pbx: str, limit: int) -> RequestGate | None:
        """A gate holding `limit` requests to `pbx` at once across every worker that shares this
        state, or None where the state is not shared (SQLite: one host, the client's own limit
        is the whole limit)."""
        ...

    def close(self) -> None: ...


def worker_id() -> str:
    """This process's name in leases: host, PID and a random tag (a PID is reused after a
    restart; the old process's leases must not look like ours)."""
    return f"{_host()}:{os.getpid()}:{secrets.token_hex(3)}"


def _host() -> str:
    return socket.gethostname()[:40].replace(":", "-")


def free_dead_local_leases(ledger: Ledger) -> list[str]:
    """End the leases of workers on this host whose process is gone (a crash, a SIGKILL), so a
    restarted daemon takes their recordings at once instead of after `lease_s`. Workers on other
    hosts are left to their leases running out: we cannot see their processes. Return the dead
    workers' names."""
    dead = []
    for owner in ledger.lease_holders(f"{_host()}:"):
        parts = owner.split(":")
        if len(parts) == 3 and parts[1].isdigit() and not _alive(int(parts[1])):
            ledger.release_all(owner)
            dead.append(owner)
    return dead


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)  # signal 0: only asks whether the process exists
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # exists, owned by someone else
    return True


def open_sqlite(
    cfg: Config, *, create: bool = True, statement_timeout_s: float | None = None
) -> SqliteState:
    db = open_database(cfg.state.path, timezones=cfg.timezones, create=create)
    if statement_timeout_s is not None:
        db.limit_statements(statement_timeout_s)
    return SqliteState(db, cfg, str(cfg.state.path))


def open_state(
    cfg: Config, *, create: bool = True, statement_timeout_s: float | None = None
) -> State:
    """Open the configured state, creating or migrating its schema (one process at a time: on
    SQLite under BEGIN IMMEDIATE, on PostgreSQL under an advisory lock). Raise `ConfigError` for
    an unreadable password source, `StateUnavailable` if the database cannot be reached and
    `SchemaTooNew` if a newer archiver migrated it. Without `create` (commands that read or amend
    the state), a missing SQLite file raises `StateFileError` naming the path. With
    `statement_timeout_s` (the web's searches) a statement that runs longer raises
    `StatementTimeout`."""
    if cfg.state.url is None:
        return open_sqlite(cfg, create=create, statement_timeout_s=statement_timeout_s)
    return open_postgres(cfg, _password(cfg.state), statement_timeout_s=statement_timeout_s)


def _password(state: StateConfig) -> str | None:
    password = state_password(state)
    if password:
        register_secret(password)
    return password
