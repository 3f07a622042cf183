"""What only the shared PostgreSQL state does: several workers, advisory locks, a password, a
restarting server. (The tables' behaviour runs on both backends in test_ledger/test_calllog.)"""

from __future__ import annotations

import asyncio
import json
import os
import re
import threading
import time
from collections.abc import AsyncIterator, Iterator
from datetime import date
from pathlib import Path
from zoneinfo import ZoneInfo

import psycopg
import pytest
from support import Rig, run_archiver, start_rig, state_config

from archiver.calls.autocall import AutocallRequest
from archiver.config import Config, S3Config
from archiver.lab.postgres import LocalPostgres
from archiver.lab.seaweed import SeaweedS3
from archiver.lab.simulator import CONCURRENCY_KEY, SimulatorOptions
from archiver.names import parse_name
from archiver.pipeline import PollReport
from archiver.state.api import State, open_state
from archiver.state.db import StateUnavailable
from archiver.state.pg_state import PostgresState

DB_PASSWORD = "Db-Secret-8c1f0e"  # the scram server's superuser password
FIRST_DAY = date(2016, 11, 17)
IST = ZoneInfo("Europe/Istanbul")


@pytest.fixture
def pg_cfg(postgres: LocalPostgres) -> Config:
    return state_config({"url": postgres.create_database(), "outage_s": 5})


def _open(cfg: Config) -> PostgresState:
    state = open_state(cfg)
    assert isinstance(state, PostgresState)
    return state


def test_migrations_run_once_when_workers_start_together(pg_cfg: Config) -> None:
    opened: list[State] = []
    errors: list[BaseException] = []

    def start() -> None:
        try:
            opened.append(open_state(pg_cfg))
        except BaseException as error:  # reported below
            errors.append(error)

    threads = [threading.Thread(target=start) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    state = opened[0]
    assert isinstance(state, PostgresState)
    versions = state.db.execute("SELECT version FROM schema_migrations ORDER BY version").rows
    folder = Path(__file__).parents[1] / "archiver/state/migrations/postgresql"
    files = sorted(folder.glob("*.sql"))
    assert versions == [(int(f.name[:4]),) for f in files]  # each file once, however many raced
    for each in opened:
        each.close()


def test_a_claim_in_progress_is_skipped_not_waited_for(
    pg_cfg: Config, postgres: LocalPostgres
) -> None:
    state = _open(pg_cfg)
    rec = parse_name("pbx", "t", "20161118-110332-100-200-1479456211.1-5.gsm", IST)
    state.ledger.discover([rec])
    assert pg_cfg.state.url is not None
    with psycopg.connect(pg_cfg.state.url) as other, other.transaction():
        # Another worker is in the middle of claiming it (holds the row lock).
        other.execute("SELECT key FROM recordings WHERE key = %s FOR UPDATE", (rec.key,))
        started = time.monotonic()
        assert not state.ledger.claim(rec.key, "w1", lease_s=60)
        assert time.monotonic() - started < 1.0
    assert state.ledger.claim(rec.key, "w1", lease_s=60)  # free again once that ended
    state.close()


async def test_pbx_request_slots_hold_across_workers(pg_cfg: Config) -> None:
    workers = [_open(pg_cfg), _open(pg_cfg)]
    gates = [worker.pbx_gate("pbx", 2) for worker in workers]
    active = peak = 0

    async def request(n: int) -> None:
        nonlocal active, peak
        gate = gates[n % 2]
        assert gate is not None
        async with gate():
            active += 1
            peak = max(peak, active)
            await asyncio.sleep(0.1)
            active -= 1

    await asyncio.gather(*(request(n) for n in range(8)))
    assert peak == 2  # two workers, each allowed 2 on its own: 2 together
    for worker in workers:
        worker.close()


async def test_a_dead_workers_slot_is_free_at_once(pg_cfg: Config) -> None:
    holder, other = _open(pg_cfg), _open(pg_cfg)
    gate = holder.pbx_gate("pbx", 1)
    other_gate = other.pbx_gate("pbx", 1)
    assert gate is not None and other_gate is not None
    async with gate():
        # The holder's process dies: PostgreSQL ends its session and with it the lock.
        holder.db.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_locks"
            " WHERE locktype = 'advisory' AND granted AND pid != pg_backend_pid()"
        )
        async with asyncio.timeout(5):
            async with other_gate():
                pass
    holder.close()
    other.close()


@pytest.fixture
async def rig(
    tmp_path: Path,
    s3_config: S3Config,
    s3_env: dict[str, str],
    seaweed: SeaweedS3,
    postgres: LocalPostgres,
) -> AsyncIterator[Rig]:
    options = SimulatorOptions(
        username="admin", password="Shared-Secret-1", seed=5, start=FIRST_DAY, days=1,
        per_day=16, max_duration_s=20, delay_ms=30,
    )  # fmt: skip
    tables = {"state": {"url": postgres.create_database(), "lease_s": 30}}
    rig = await start_rig(options, s3_config, seaweed, tmp_path, tables)
    try:
        yield rig
    finally:
        await rig.runner.cleanup()


async def test_two_workers_archive_each_recording_once(rig: Rig) -> None:
    states = [_open(rig.cfg), _open(rig.cfg)]
    archivers = [rig.archiver(state) for state in states]
    try:
        reports: list[PollReport] = await asyncio.gather(
            *(archiver.archive_days({"pbx": [FIRST_DAY]}) for archiver in archivers)
        )
    finally:
        for archiver in archivers:
            for client in archiver.clients.values():
                await client.close()
            archiver.close()
    valid = [r for r in rig.options.build_corpus().recordings() if r.valid]
    counts = states[0].ledger.counts()
    assert counts["verified"] + counts["empty"] == len(valid) and counts["failed"] == 0
    done = sum(report.archived for report in reports)
    assert sum(report.already_present for report in reports) == 0  # no work done twice
    assert done == counts["verified"] == len(rig.objects())
    assert sum(report.empty for report in reports) == counts["empty"]
    for report in reports:  # what each found due, it archived or left to the other
        assert report.archived + report.empty + report.taken_elsewhere == report.due
    # Each worker may send 2 requests at once; the PBX saw at most 2 from both together.
    assert rig.runner.app[CONCURRENCY_KEY].peak == 2
    for state in states:
        state.close()


@pytest.fixture(scope="module")
def scram_postgres() -> Iterator[LocalPostgres]:
    """A server that wants a password (scram-sha-256), for the password and outage tests."""
    with LocalPostgres(password=DB_PASSWORD) as server:
        yield server


def test_password_from_a_file_and_a_wrong_one_never_shown(
    scram_postgres: LocalPostgres, tmp_path: Path
) -> None:
    url = scram_postgres.url()
    good = tmp_path / "good"
    good.write_text(DB_PASSWORD + "\n")
    state = open_state(state_config({"url": url, "password_file": str(good)}))
    assert state.where == url and state.ledger.counts()["verified"] == 0
    state.close()
    os.environ["ARCHIVER_TEST_DB_PASSWORD"] = "Wrong-Password-77"
    try:
        with pytest.raises(StateUnavailable) as raised:
            open_state(state_config({"url": url, "password_env": "ARCHIVER_TEST_DB_PASSWORD"}))
    finally:
        del os.environ["ARCHIVER_TEST_DB_PASSWORD"]
    assert "password authentication failed" in raised.value.reason
    assert "Wrong-Password-77" not in str(raised.value)


def test_cli_status_reads_postgresql_and_says_why_not(
    scram_postgres: LocalPostgres, tmp_path: Path
) -> None:
    secret = tmp_path / "db-password"
    secret.write_text(DB_PASSWORD)
    secret.chmod(0o600)
    config = tmp_path / "archiver.toml"
    body = (
        '[pbx]\nurl = "http://127.0.0.1:1"\nusername = "u"\npassword_env = "P"\n'
        '[s3]\nbucket = "unused"\n'
        f'[state]\nurl = "{scram_postgres.url()}"\npassword_file = "{secret}"\noutage_s = 1\n'
    )
    config.write_text(body)
    env = {**os.environ, "P": "x"}
    ok = run_archiver("status", "--json", "--config", str(config), env=env)
    assert ok.returncode == 0, ok.stderr
    assert '"verified": 0' in ok.stdout and '"backend": "postgresql"' in ok.stdout
    secret.write_text("Not-The-Password-5")
    refused = run_archiver("status", "--config", str(config), env=env)
    assert refused.returncode == 5  # unreachable (2 is a usage error: archiver.exits)
    assert "password authentication failed" in refused.stderr
    assert "Not-The-Password-5" not in refused.stderr + refused.stdout


def test_audit_reads_the_access_log_in_postgresql(
    scram_postgres: LocalPostgres, tmp_path: Path
) -> None:
    """`archiver audit` lists what the web archive logged in the shared PostgreSQL state (it
    once opened a SQLite file at [state] path whatever the backend) and creates no file."""
    from datetime import UTC, datetime

    from archiver.state.access import AccessEvent

    secret = tmp_path / "db-password"
    secret.write_text(DB_PASSWORD)
    secret.chmod(0o600)
    config = tmp_path / "archiver.toml"
    config.write_text(
        '[pbx]\nurl = "http://127.0.0.1:1"\nusername = "u"\npassword_env = "P"\n'
        '[s3]\nbucket = "unused"\n'
        f'[state]\nurl = "{scram_postgres.url()}"\npassword_file = "{secret}"\n'
        f'path = "{tmp_path / "never.sqlite3"}"\n'
    )
    os.environ["ARCHIVER_TEST_DB_PASSWORD"] = DB_PASSWORD
    try:
        state = open_state(
            state_config({"url": scram_postgres.url(), "password_env": "ARCHIVER_TEST_DB_PASSWORD"})
        )
    finally:
        del os.environ["ARCHIVER_TEST_DB_PASSWORD"]
    key = "recordings/pbx/2016/11/17/20161117-120000_100_903123320404_1479373200.7.mp3"
    try:
        state.access_log.record(
            AccessEvent(at=datetime.now(UTC), username="auditor-pg", action="play",
                        outcome="ok", source="127.0.0.1", object_key=key, byte_range="bytes=0-")
        )  # fmt: skip
    finally:
        state.close()
    listed = run_archiver(
        "audit",
        "--user",
        "auditor-pg",
        "--json",
        "--config",
        str(config),
        env={**os.environ, "P": "x"},
    )
    assert listed.returncode == 0, listed.stderr
    events = json.loads(listed.stdout)["events"]
    assert [(e["username"], e["object_key"]) for e in events] == [("auditor-pg", key)]
    assert not (tmp_path / "never.sqlite3").exists()
    assert DB_PASSWORD not in listed.stdout + listed.stderr


def test_a_statement_waits_for_a_restarting_server(scram_postgres: LocalPostgres) -> None:
    os.environ["ARCHIVER_TEST_DB_PASSWORD"] = DB_PASSWORD
    try:
        state = open_state(
            state_config(
                {"url": scram_postgres.url(), "password_env": "ARCHIVER_TEST_DB_PASSWORD",
                 "outage_s": 30}
            )
        )  # fmt: skip
    finally:
        del os.environ["ARCHIVER_TEST_DB_PASSWORD"]
    scram_postgres.crash()
    restart = threading.Timer(1.0, scram_postgres.start)
    restart.start()
    started = time.monotonic()
    try:
        assert state.ledger.counts()["verified"] == 0  # waited for the server, then answered
    finally:
        restart.join()
        state.close()
    assert time.monotonic() - started >= 0.9


def test_state_copy_moves_sqlite_over_idempotently_and_hides_the_password(
    scram_postgres: LocalPostgres, tmp_path: Path
) -> None:
    path = tmp_path / "old" / "ledger.sqlite3"
    old = open_state(state_config({"path": str(path)}))
    recs = [
        parse_name("pbx", "t", f"20161118-1100{n:02d}-100-200-1479456211.{n}-5.gsm", IST)
        for n in range(5)
    ]
    old.ledger.discover(recs)
    old.ledger.advance(recs[0].key, "verified", object_key="k/0.mp3")
    old.ledger.fail(recs[1].key, "bad audio: not GSM", retryable=False)
    call_id = old.calls.begin(
        "pbx", "903123320404", AutocallRequest("903123320404", 2, 10, 1, 1, "", "-1").params()
    )
    old.calls.record_event(number="903123320404", status="ANSWER", kind="final", ended=True,
                           source="127.0.0.1")  # fmt: skip
    old.close()
    database = scram_postgres.create_database()
    target = database.replace("archiver_test@", f"archiver_test:{DB_PASSWORD}@")
    env = {**os.environ, "ARCHIVER_CONFIG": "/nonexistent.toml"}
    first = run_archiver("state", "copy", "--from", str(path), "--to", target, env=env)
    assert first.returncode == 0, first.stderr
    assert DB_PASSWORD not in first.stdout + first.stderr
    assert "archiver_test:***@" in first.stdout
    assert re.search(r"recordings\s+5 in the file,\s+5 copied,\s+0 already there", first.stdout)
    assert re.search(r"call_events\s+1 in the file,\s+1 copied", first.stdout)
    again = run_archiver("state", "copy", "--from", str(path), "--to", target, env=env)
    assert again.returncode == 0, again.stderr
    assert re.search(r"recordings\s+5 in the file,\s+0 copied,\s+5 already there", again.stdout)
    os.environ["ARCHIVER_TEST_DB_PASSWORD"] = DB_PASSWORD
    try:
        moved = open_state(
            state_config({"url": database, "password_env": "ARCHIVER_TEST_DB_PASSWORD"})
        )
    finally:
        del os.environ["ARCHIVER_TEST_DB_PASSWORD"]
    try:
        assert moved.ledger.counts()["verified"] == 1 and moved.ledger.counts()["failed"] == 1
        entry = moved.ledger.get(recs[1].key)
        assert entry is not None and entry.last_error == "bad audio: not GSM"
        summary = moved.calls.get(call_id)
        assert summary is not None and summary.status == "ANSWER"
        # The next call logged gets a new id, not one the copy brought over.
        assert moved.calls.begin(
            "pbx", "903123320405", AutocallRequest("903123320405", 2, 10, 1, 1, "", "-1").params()
        ) > (call_id)
    finally:
        moved.close()


def test_workers_need_only_select_insert_update(postgres: LocalPostgres) -> None:
    url = postgres.create_database()
    open_state(state_config({"url": url})).close()  # the owner migrates once
    database = url.rsplit("/", 1)[1]
    postgres.psql(
        "DO $$ BEGIN IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'worker_role') THEN"
        " CREATE ROLE worker_role LOGIN; END IF; END $$"
    )
    postgres.psql(
        "REVOKE CREATE ON SCHEMA public FROM PUBLIC;"
        " GRANT SELECT, INSERT, UPDATE ON ALL TABLES IN SCHEMA public TO worker_role;"
        " GRANT USAGE ON ALL SEQUENCES IN SCHEMA public TO worker_role",
        database,
    )
    worker = open_state(state_config({"url": postgres.url(database, user="worker_role")}))
    try:
        rec = parse_name("pbx", "t", "20161118-110332-100-200-1479456211.1-5.gsm", IST)
        worker.ledger.discover([rec])
        assert worker.ledger.claim(rec.key, "w1", lease_s=60)
        assert worker.ledger.advance(rec.key, "verified", owner="w1", object_key="k")
        worker.ledger.release(rec.key, "w1")
        assert worker.calls.begin(
            "pbx", "903123320404", AutocallRequest("903123320404", 2, 10, 1, 1, "", "-1").params()
        )
        gate = worker.pbx_gate("pbx", 1)
        assert gate is not None

        async def one_request() -> None:
            async with gate():
                pass

        asyncio.run(one_request())
    finally:
        worker.close()
