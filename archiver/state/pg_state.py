"""The PostgreSQL implementation of `State` (`[state] url`)."""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType
from zoneinfo import ZoneInfo

from archiver.config import Config
from archiver.state.base import BaseState, RequestGate
from archiver.state.migrate import migrate
from archiver.state.pg_url import make_conninfo, redact_url
from archiver.state.postgres import PbxSlots, PostgresDb

__all__ = ["PostgresState", "connect_postgres", "open_postgres"]

_NO_ZONES: Mapping[str, ZoneInfo] = MappingProxyType({})


class PostgresState(BaseState):
    """The state in one PostgreSQL database, shared by any number of workers."""

    def __init__(self, db: PostgresDb, cfg: Config, where: str) -> None:
        super().__init__(db, cfg, where)
        self._pg = db
        self._gates: dict[str, PbxSlots] = {}

    def pbx_gate(self, pbx: str, limit: int) -> RequestGate | None:
        gate = self._gates.get(pbx)
        if gate is None:
            gate = PbxSlots(self._pg.pool, pbx, limit, outage_s=self._pg.outage_s)
            self._gates[pbx] = gate
        return gate


def open_postgres(
    cfg: Config, password: str | None, *, statement_timeout_s: float | None = None
) -> PostgresState:
    """Connect to `cfg.state.url`, migrate, and return the state."""
    state = cfg.state
    assert state.url is not None  # noqa: S101 - open_state only calls this with a url
    # Each PBX request slot holds a connection while its request runs.
    slots = sum(pbx.max_concurrent_requests for pbx in cfg.pbx)
    db = connect_postgres(
        state.url,
        password,
        state.tls_options(),
        pool_size=state.pool_size + slots,
        outage_s=state.outage_s,
        timezones=cfg.timezones,
        statement_timeout_s=statement_timeout_s,
    )
    return PostgresState(db, cfg, redact_url(state.url))


def connect_postgres(
    url: str,
    password: str | None,
    tls: dict[str, str],
    *,
    pool_size: int,
    outage_s: float,
    timezones: Mapping[str, ZoneInfo] = _NO_ZONES,
    statement_timeout_s: float | None = None,
) -> PostgresDb:
    """Connect to `url` and bring its schema up to date (then limit `execute`'s statements to
    `statement_timeout_s`, if given (`timezones` date the recordings moved
    into the catalogue: see `fill_from_ledger`). Raise StateUnavailable if it cannot be reached
    or refuses us, SchemaTooNew if a newer archiver migrated it."""
    db = PostgresDb(make_conninfo(url, password, tls), pool_size=pool_size, outage_s=outage_s)
    db.open()
    try:
        db.retrying("migrations", lambda: migrate(db, timezones=timezones))
    except BaseException:
        db.close()
        raise
    if statement_timeout_s is not None:  # after the migrations, which may take their time
        db.limit_statements(statement_timeout_s)
    return db
