"""The README's least-privilege PostgreSQL grants are enough for a worker (issue 19, item 13): the
grants are read from the README itself, so the two cannot drift apart again."""

from __future__ import annotations

import re
from datetime import UTC, datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import psycopg
import pytest
from support import state_config

from archiver.calls.autocall import AutocallRequest
from archiver.lab.postgres import LocalPostgres
from archiver.names import parse_name
from archiver.state import AccessEvent, open_state
from archiver.state.catalogue import catalogue_entry

README = Path(__file__).resolve().parent.parent / "README.md"
IST = ZoneInfo("Europe/Istanbul")


def _readme_grants(role: str) -> str:
    blocks = re.findall(r"```sql\n(.*?)```", README.read_text(encoding="utf-8"), re.S)
    (grants,) = [block for block in blocks if "GRANT" in block]
    return (
        str(grants)
        .replace(" TO archiver;", f" TO {role};")
        .replace(" FROM archiver;", f" FROM {role};")
    )


def test_a_worker_runs_with_exactly_the_readmes_grants(postgres: LocalPostgres) -> None:
    url = postgres.create_database()
    open_state(state_config({"url": url})).close()  # the owner migrates once
    database = url.rsplit("/", 1)[1]
    postgres.psql(
        "DO $$ BEGIN IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'grants_worker') THEN"
        " CREATE ROLE grants_worker LOGIN; END IF; END $$"
    )
    postgres.psql("REVOKE CREATE ON SCHEMA public FROM PUBLIC;" + _readme_grants("grants_worker"),
                  database)  # fmt: skip
    worker = open_state(state_config({"url": postgres.url(database, user="grants_worker")}))
    try:
        recs = [
            parse_name("pbx", "t", f"20161118-11033{n}-100-200-1479456211.{n}-5.gsm", IST)
            for n in range(2)
        ]
        worker.ledger.discover(recs)
        assert worker.ledger.claim(recs[0].key, "w1", lease_s=60)
        entry = catalogue_entry(recs[0], object_key="recordings/a.mp3", size_bytes=10)
        assert worker.ledger.mark_verified(entry, owner="w1")
        # Verified again (a re-upload, a reconcile): the catalogue row is replaced.
        assert worker.ledger.mark_verified(entry, owner="w1")
        assert worker.catalogue.get("recordings/a.mp3") is not None
        worker.ledger.release(recs[0].key, "w1")
        assert worker.ledger.claim(recs[1].key, "w1", lease_s=60)
        assert worker.ledger.fail(recs[1].key, "bad audio", retryable=False, owner="w1")
        worker.access_log.record(AccessEvent(at=datetime.now(UTC), username="ayse",
                                             action="play", outcome="ok", source="127.0.0.1",
                                             object_key="recordings/a.mp3"))  # fmt: skip
        # The access log is append-only for the workers' role: an UPDATE is refused.
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            worker.db.execute("UPDATE access_log SET username = 'mallory'")  # type: ignore[attr-defined]
        assert worker.calls.begin(
            "pbx", "903123320404", AutocallRequest("903123320404", 2, 10, 1, 1, "", "-1").params()
        )
    finally:
        worker.close()
