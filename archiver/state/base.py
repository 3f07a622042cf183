"""What both backends' `State` share: the tables' code over one `Db`, and the async face."""

from __future__ import annotations

from collections.abc import Callable
from contextlib import AbstractAsyncContextManager

from archiver.config import Config
from archiver.state.access import AccessLog
from archiver.state.aio import StateThreads, state_threads
from archiver.state.calls import CallLog
from archiver.state.catalogue import Catalogue
from archiver.state.db import Db, Dialect
from archiver.state.destructions import DestructionLog
from archiver.state.fixity import Fixity
from archiver.state.holds import Holds
from archiver.state.ledger import Ledger

__all__ = ["BaseState", "RequestGate", "SqliteState"]

# Entered around every request to one PBX: waits for one of that PBX's shared request slots.
RequestGate = Callable[[], AbstractAsyncContextManager[None]]


class BaseState:
    def __init__(self, db: Db, cfg: Config, where: str) -> None:
        self._db = db
        self._where = where
        self._ledger = Ledger(db)
        self._calls = CallLog(db, window_s=cfg.autocall.match_window_s)
        self._catalogue = Catalogue(db)
        self._access_log = AccessLog(db)
        self._holds = Holds(db)
        self._destructions = DestructionLog(db)
        self._fixity = Fixity(db)

    @property
    def backend(self) -> Dialect:
        return self._db.dialect

    @property
    def where(self) -> str:
        return self._where

    @property
    def db(self) -> Db:
        return self._db

    @property
    def ledger(self) -> Ledger:
        return self._ledger

    @property
    def calls(self) -> CallLog:
        return self._calls

    @property
    def catalogue(self) -> Catalogue:
        return self._catalogue

    @property
    def access_log(self) -> AccessLog:
        return self._access_log

    @property
    def aio(self) -> StateThreads:
        return state_threads(self._db)

    @property
    def holds(self) -> Holds:
        return self._holds

    @property
    def destructions(self) -> DestructionLog:
        return self._destructions

    @property
    def fixity(self) -> Fixity:
        return self._fixity

    def close(self) -> None:
        state_threads(self._db).close()
        self._db.close()


class SqliteState(BaseState):
    """The state in one SQLite file (`[state] path`)."""

    def pbx_gate(self, pbx: str, limit: int) -> RequestGate | None:
        return None
