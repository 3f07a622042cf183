"""`archiver audit` (filters in local dates, JSON, CSV), `archiver audit verify` (a row edited in
SQLite or PostgreSQL is named; day anchors in the bucket catch a rewritten or shortened history)
and `archiver verify` (a byte changed in an archived object is found), run as a user runs them."""

from __future__ import annotations

import csv
import io
import json
import os
import sqlite3
import uuid
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import pytest
from support import run_archiver
from web_support import archive_day, s3_environment, web_table

from archiver.config import Config, S3Config
from archiver.lab.postgres import LocalPostgres
from archiver.lab.seaweed import SeaweedS3
from archiver.state.access import AccessEvent
from archiver.state.api import open_state
from archiver.state.catalogue import SearchQuery

KEY = "recordings/pbx/2016/11/17/20161117-120000_100_903123320404_1479373200.7.mp3"


def _toml(tmp: Path, *, state: str, bucket: str = "unused", endpoint: str = "") -> Path:
    config = tmp / "archiver.toml"
    s3 = f'[s3]\nbucket = "{bucket}"\nregion = "us-east-1"\naddressing_style = "path"\n'
    if endpoint:
        s3 += f'endpoint_url = "{endpoint}"\n'
    config.write_text(
        '[pbx]\nurl = "http://127.0.0.1:1"\nusername = "u"\npassword = "unused-pbx-pw"\n'
        'timezone = "Europe/Istanbul"\n' + s3 + f"[state]\n{state}\n"
    )
    return config


def _env(seaweed: SeaweedS3 | None = None) -> dict[str, str]:
    env = {**os.environ, "AWS_CONFIG_FILE": "/nonexistent", "AWS_SHARED_CREDENTIALS_FILE": "/no"}
    if seaweed is not None:
        env.update(seaweed.aws_env())
        env.pop("AWS_ENDPOINT_URL_S3", None)
    return env


def _fill(config: Path, days_ago: int = 3) -> None:
    from archiver.config import load_config

    state = open_state(load_config(config))
    base = datetime.now(UTC).replace(hour=9, minute=0, second=0, microsecond=0)
    try:
        log = state.access_log
        for n in range(days_ago, 0, -1):
            at = base - timedelta(days=n)
            log.record(AccessEvent(at, "ayse", "play", "ok", "10.0.0.1", object_key=KEY))
            log.record(AccessEvent(at + timedelta(minutes=5), "can", "search", "ok", "10.0.0.2",
                                   detail=" number=903123320404 ", item_count=3))  # fmt: skip
        log.record(AccessEvent(base - timedelta(days=1, minutes=-30), "zeynep", "export", "ok",
                               "10.0.0.3", detail="case 2026/44", item_count=2,
                               object_keys=(KEY, "recordings/other.mp3")))  # fmt: skip
    finally:
        state.close()


@pytest.fixture
def sqlite_config(tmp_path: Path) -> Path:
    config = _toml(tmp_path, state=f'path = "{tmp_path / "state.sqlite3"}"')
    _fill(config)
    return config


def test_audit_filters_in_local_days_and_writes_csv_and_json(sqlite_config: Path) -> None:
    env = _env()
    listed = run_archiver("audit", "--key", KEY, "--json", "--config", str(sqlite_config), env=env)
    assert listed.returncode == 0, listed.stderr
    answer = json.loads(listed.stdout)
    assert answer["timezone"] == "Europe/Istanbul"
    assert [e["action"] for e in answer["events"]] == ["play", "play", "play", "export"]
    assert all(e["at"].endswith("+03:00") for e in answer["events"])
    yesterday = (datetime.now(UTC) - timedelta(days=1)).astimezone().date().isoformat()
    day = run_archiver("audit", "--from", yesterday, "--to", yesterday, "--csv",
                       "--config", str(sqlite_config), env=env)  # fmt: skip
    rows = list(csv.DictReader(io.StringIO(day.stdout)))
    assert {r["action"] for r in rows} == {"play", "search", "export"}, day.stdout
    number = run_archiver("audit", "--number", "0312 332 04 04", "--action", "search",
                          "--config", str(sqlite_config), env=env)  # fmt: skip
    assert number.returncode == 0 and number.stdout.count(" search ") == 3, number.stdout
    assert "3 event(s), times in Europe/Istanbul" in number.stdout
    bad = run_archiver("audit", "--to", "2026-01-01", "--from", "2026-02-01",
                       "--config", str(sqlite_config), env=env)  # fmt: skip
    assert bad.returncode == 2 and "--to is before --from" in bad.stderr


def test_a_row_edited_in_sqlite_is_named(sqlite_config: Path, tmp_path: Path) -> None:
    env = _env()
    args = ("audit", "verify", "--no-anchors", "--config", str(sqlite_config))
    intact = run_archiver(*args, env=env)
    assert intact.returncode == 0 and "7 rows, chain intact" in intact.stdout, intact.stdout
    with sqlite3.connect(tmp_path / "state.sqlite3") as db:
        db.execute("UPDATE access_log SET username = 'someone-else' WHERE id = 4")
    broken = run_archiver(*args, env=env)
    assert broken.returncode == 3
    assert "chain BROKEN at row 4: changed" in broken.stdout


def test_a_row_edited_in_postgresql_is_named(postgres: LocalPostgres, tmp_path: Path) -> None:
    url = postgres.create_database()
    config = _toml(tmp_path, state=f'url = "{url}"')
    _fill(config)
    env = _env()
    args = ("audit", "verify", "--json", "--no-anchors", "--config", str(config))
    assert json.loads(run_archiver(*args, env=env).stdout)["intact"] is True
    postgres.psql("DELETE FROM access_log WHERE id = 2", database=url.rsplit("/", 1)[1])
    broken = run_archiver(*args, env=env)
    answer = json.loads(broken.stdout)
    assert broken.returncode == 3 and answer["first_break"] == {
        "row_id": 3, "reason": "deleted or inserted"}  # fmt: skip


def test_day_anchors_catch_a_rewritten_and_a_shortened_history(
    seaweed: SeaweedS3, tmp_path: Path
) -> None:
    bucket = f"audit-{uuid.uuid4().hex[:12]}"
    seaweed.create_bucket(bucket)
    path = tmp_path / "state.sqlite3"
    config = _toml(tmp_path, state=f'path = "{path}"', bucket=bucket,
                   endpoint=seaweed.endpoint_url)  # fmt: skip
    _fill(config)
    env = _env(seaweed)
    anchored = run_archiver("audit", "anchor", "--config", str(config), env=env)
    assert anchored.returncode == 0 and anchored.stdout.count("wrote audit/chain/") == 3
    again = run_archiver("audit", "anchor", "--config", str(config), env=env)
    assert "0 day anchors written" in again.stdout
    assert run_archiver("audit", "verify", "--config", str(config), env=env).returncode == 0
    # Someone with the database alone rewrites a row and re-chains everything after it: the
    # chain verifies again, the anchors do not.
    from archiver.state.access import CHAINED_COLUMNS
    from archiver.state.chain import GENESIS, row_hash

    with sqlite3.connect(path) as db:
        db.execute("UPDATE access_log SET username = 'nobody' WHERE id = 1")
        prev = GENESIS
        columns = ", ".join(CHAINED_COLUMNS)
        select = f"SELECT id, {columns} FROM access_log ORDER BY id"  # noqa: S608
        for row in db.execute(select).fetchall():
            digest = row_hash(prev, dict(zip(CHAINED_COLUMNS, row[1:], strict=True)))
            db.execute("UPDATE access_log SET prev_hash = ?, row_hash = ? WHERE id = ?",
                       (prev, digest, row[0]))  # fmt: skip
            prev = digest
    rewritten = run_archiver("audit", "verify", "--config", str(config), env=env)
    assert rewritten.returncode == 3, rewritten.stdout
    assert "chain intact" in rewritten.stdout and "history rewritten" in rewritten.stdout
    with sqlite3.connect(path) as db:
        db.execute("DELETE FROM access_log WHERE id >= 5")
    shortened = run_archiver("audit", "verify", "--json", "--config", str(config), env=env)
    reasons = [p["reason"] for p in json.loads(shortened.stdout)["anchors"]["problems"]]
    assert shortened.returncode == 3 and any("rows deleted" in r for r in reasons), reasons


@pytest.fixture(scope="module")
def archived(seaweed: SeaweedS3, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Config]:
    tmp = tmp_path_factory.mktemp("verify")
    with s3_environment(seaweed):
        yield archive_day(seaweed, tmp, web_table(tmp))


def test_a_byte_changed_in_an_archived_object_is_found(
    archived: Config, seaweed: SeaweedS3, tmp_path: Path
) -> None:
    config = _toml(tmp_path, state=f'path = "{archived.state.path}"', bucket=archived.s3.bucket,
                   endpoint=seaweed.endpoint_url)  # fmt: skip
    env = _env(seaweed)
    metrics = tmp_path / "verify.prom"
    clean = run_archiver("verify", "--metrics-file", str(metrics), "--config", str(config),
                         env=env)  # fmt: skip
    assert clean.returncode == 0 and "6 object(s) re-read" in clean.stdout, clean.stdout
    assert "archiver_verify_damaged_objects 0.0" in metrics.read_text()
    state = open_state(archived, create=False)
    try:
        victim = state.catalogue.search(SearchQuery(limit=1)).items[0].object_key
    finally:
        state.close()
    client = seaweed.client()
    data = bytearray(client.get_object(Bucket=archived.s3.bucket, Key=victim)["Body"].read())
    data[len(data) // 2] ^= 0x01
    client.put_object(Bucket=archived.s3.bucket, Key=victim, Body=bytes(data))
    found = run_archiver("verify", "--json", "--metrics-file", str(metrics),
                         "--config", str(config), env=env)  # fmt: skip
    answer = json.loads(found.stdout)
    assert found.returncode == 3 and answer["damaged"] == 1, found.stdout
    assert [(f["key"], f["verdict"]) for f in answer["findings"]] == [(victim, "mismatch")]
    assert "archiver_verify_damaged_objects 1.0" in metrics.read_text()
    recent = run_archiver("verify", "--since", date.today().isoformat(), "--config", str(config),
                          env=env)  # fmt: skip
    assert recent.returncode == 0 and "0 object(s) re-read" in recent.stdout  # calls of 2016


def test_anchors_in_an_object_lock_bucket_cannot_be_deleted(
    locked_s3: S3Config, s3_env: dict[str, str], tmp_path: Path
) -> None:
    """On both stores that enforce Object Lock (SeaweedFS and moto), an anchor carries a legal
    hold and the store refuses to delete it."""
    from archiver.audit import AnchorLock, write_anchors
    from archiver.config import load_config
    from archiver.s3 import S3Store, StoreError

    config = _toml(tmp_path, state=f'path = "{tmp_path / "state.sqlite3"}"')
    _fill(config, days_ago=1)
    state = open_state(load_config(config))
    store = S3Store(locked_s3)
    try:
        (anchor,) = write_anchors(state.access_log, store, lock=AnchorLock())
    finally:
        state.close()
    assert store.lock_state(anchor.key).legal_hold
    with pytest.raises(StoreError):
        store.delete_every_version(anchor.key)
    assert store.head(anchor.key) is not None


def test_audit_verify_walks_the_destruction_log_too(sqlite_config: Path, tmp_path: Path) -> None:
    from archiver.config import load_config
    from archiver.state.api import BaseState
    from archiver.state.chain import append
    from archiver.state.db import Param
    from archiver.state.destructions import LOG_COLUMNS

    state = open_state(load_config(sqlite_config))
    try:
        assert isinstance(state, BaseState)
        for n in range(3):
            row: dict[str, Param] = {name: f"{name}-{n}" for name in LOG_COLUMNS}
            row.update(at_s=1_700_000_000 + n, versions=1, reason="retention")
            append(state.db, "destruction_log", row)
    finally:
        state.close()
    args = ("audit", "verify", "--no-anchors", "--config", str(sqlite_config))
    intact = run_archiver(*args, env=_env())
    assert intact.returncode == 0 and "destruction log: 3 rows, chain intact" in intact.stdout
    with sqlite3.connect(tmp_path / "state.sqlite3") as db:
        db.execute("UPDATE destruction_log SET caller = '905550000000' WHERE id = 2")
    broken = run_archiver(*args, env=_env())
    assert broken.returncode == 3, broken.stdout
    assert "destruction log: chain BROKEN at row 2: changed" in broken.stdout
    assert "access log: 7 rows, chain intact" in broken.stdout
