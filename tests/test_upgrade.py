"""Upgrades (issue 23 item 5): the state written by the first release that had one migrates to
today's schema on SQLite, and through `archiver state copy` into PostgreSQL; `archiver status`
and `archiver web` read it.

The fixture `tests/fixtures/first-release-state.sqlite3` is what commit 26da645 (version 0.1.0,
the first whose `archiver run`/`backfill` made a state file) wrote: its own `archiver backfill`
archived two days of its own simulator's recordings into SeaweedFS. The script beside it,
`tests/fixtures/make-first-release-state`, makes it again from that commit (`git archive`).
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import sqlite3
import subprocess
from pathlib import Path
from typing import Any

import pytest
from support import run_archiver
from web_support import USERS, Client, serving, web_table

from archiver.config import Config, parse_config
from archiver.lab.postgres import LocalPostgres, find_bindir
from archiver.state.migrate import latest_version, migrations

FIXTURE = Path(__file__).resolve().parent / "fixtures" / "first-release-state.sqlite3"
ARCHIVED = 21  # what the old backfill archived: every recording of its two days


def _old_state(tmp_path: Path) -> Path:
    """A copy of the fixture where a state lives, checked to be the old release's schema."""
    state = tmp_path / "state" / "ledger.sqlite3"
    state.parent.mkdir(mode=0o700)
    shutil.copyfile(FIXTURE, state)
    with sqlite3.connect(state) as db:
        tables = {row[0] for row in db.execute("SELECT name FROM sqlite_master WHERE type='table'")}
        assert tables == {"recordings"}  # no schema_migrations, catalogue, call log...
        assert db.execute("PRAGMA user_version").fetchone() == (1,)
    return state


def _config(tmp_path: Path, state: dict[str, object]) -> tuple[Path, Config]:
    """The same configuration as a file (for the commands) and parsed (for the web thread)."""
    web = web_table(tmp_path)
    document: dict[str, Any] = {
        "pbx": {"url": "http://127.0.0.1:1", "username": "admin", "password": "unused"},
        "s3": {"bucket": "first-release", "region": "us-east-1"},
        "state": state,
        "web": web,
    }
    lines = []
    for table, values in document.items():
        lines.append(f"[{table}]")
        lines += [f"{key} = {json.dumps(value)}" for key, value in values.items()]
    path = tmp_path / "archiver.toml"
    path.write_text("\n".join(lines) + "\n", "utf-8")
    return path, parse_config(document, "test")


def _env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if not k.startswith(("ARCHIVER_", "PG"))}


def _status(config: Path) -> dict[str, Any]:
    done = run_archiver("status", "--json", "--config", str(config), env=_env())
    assert done.returncode == 0, done.stderr
    status: dict[str, Any] = json.loads(done.stdout)
    return status


def _web_sees(cfg: Config) -> tuple[int, int]:
    """(recordings the JSON API finds, the catalogue total on the admin's status page)."""
    with serving(cfg) as site:
        client = Client(site.url)
        status, _, body = client.request("/api/recordings?limit=100",
                                         basic=("admin", USERS["admin"]))  # fmt: skip
        assert status == 200, body
        found = json.loads(body)
        assert client.login("admin", USERS["admin"]) in (302, 303)
        page, _, text = client.request("/status")
        assert page == 200, text
    shown = re.search(rb'<span id="catalogue-total">(\d+)</span>', text)
    assert shown is not None, text
    assert len(found["items"]) == found["total"]
    return int(found["total"]), int(shown[1])


def _versions(db: sqlite3.Connection) -> list[int]:
    return [int(row[0]) for row in db.execute("SELECT version FROM schema_migrations ORDER BY 1")]


def test_first_release_state_migrates_on_sqlite(tmp_path: Path) -> None:
    state = _old_state(tmp_path)
    config, cfg = _config(tmp_path, {"path": str(state)})
    status = _status(config)  # migrates at open
    assert status["counts"]["verified"] == ARCHIVED
    assert sum(status["counts"].values()) == ARCHIVED
    assert status["state"]["backend"] == "sqlite"
    with sqlite3.connect(state) as db:
        assert _versions(db) == [m.version for m in migrations("sqlite")]
        assert _versions(db)[-1] == latest_version("sqlite")
        # The migration filled the web's catalogue from the old ledger's verified rows.
        assert db.execute("SELECT COUNT(*) FROM catalogue").fetchone() == (ARCHIVED,)
        assert db.execute("PRAGMA integrity_check").fetchone() == ("ok",)
    assert _status(config)["counts"] == status["counts"]  # a second open migrates nothing
    assert _web_sees(cfg) == (ARCHIVED, ARCHIVED)


def test_first_release_state_copies_into_postgresql(
    tmp_path: Path, postgres: LocalPostgres
) -> None:
    """`archiver state copy --from OLD_FILE`: the old file itself, not one migrated first."""
    state = _old_state(tmp_path)
    url = postgres.create_database()
    config, cfg = _config(tmp_path, {"url": url, "outage_s": 5})
    before = hashlib.sha256(state.read_bytes()).hexdigest()
    copied = run_archiver("state", "copy", "--from", str(state), "--config", str(config),
                          env=_env())  # fmt: skip
    print(copied.stdout, copied.stderr)
    assert copied.returncode == 0, copied.stderr
    assert "is at schema version 0: copied from a snapshot migrated" in copied.stdout
    assert hashlib.sha256(state.read_bytes()).hexdigest() == before  # the old file untouched
    rows = {
        line.split()[0]: [int(word) for word in line.split() if word.isdigit()]
        for line in copied.stdout.splitlines()[1:]
    }
    assert rows["recordings"] == [ARCHIVED, ARCHIVED, 0]
    status = _status(config)
    assert status["counts"]["verified"] == ARCHIVED
    assert status["state"]["backend"] == "postgresql"
    version = postgres.psql("SELECT MAX(version) FROM schema_migrations", url.rsplit("/", 1)[1])
    assert int(version.strip()) == latest_version("postgresql")
    assert _web_sees(cfg) == (ARCHIVED, ARCHIVED)
    again = run_archiver("state", "copy", "--from", str(state), "--config", str(config),
                         env=_env())  # fmt: skip
    assert again.returncode == 0, again.stderr
    assert f"{ARCHIVED:>9} already there" in again.stdout  # idempotent


@pytest.mark.parametrize("table", ["recordings"])
def test_the_fixture_is_the_old_releases_schema(table: str) -> None:
    """The columns the old release's ledger made (its _SCHEMA, commit 26da645), in order."""
    with sqlite3.connect(f"{FIXTURE.as_uri()}?immutable=1", uri=True) as db:
        columns = [row[1] for row in db.execute(f"PRAGMA table_info({table})")]
    assert columns == [
        "key", "pbx", "folder", "name", "day", "state", "attempts", "retryable", "last_error",
        "object_key", "source_sha256", "source_bytes", "mp3_bytes", "mp3_md5", "audio_s",
        "discovered_at", "updated_at",
    ]  # fmt: skip


def test_the_readmes_pg_dump_recipe_restores_a_postgresql_state(
    tmp_path: Path, postgres: LocalPostgres
) -> None:
    """README, "Backup and restore": pg_dump --format=custom, then pg_restore into an empty
    database; `archiver status` and `archiver web` read the restored state."""
    url = postgres.create_database()
    config, _ = _config(tmp_path, {"url": url, "outage_s": 5})
    copied = run_archiver("state", "copy", "--from", str(_old_state(tmp_path)), "--config",
                          str(config), env=_env())  # fmt: skip
    assert copied.returncode == 0, copied.stderr
    dump = tmp_path / "state.dump"
    bindir = find_bindir()
    done = subprocess.run(
        [str(bindir / "pg_dump"), "--format=custom", "--no-owner", f"--file={dump}", url],
        capture_output=True, text=True, check=False, env=_env(),
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    restored = postgres.create_database()
    done = subprocess.run(
        [str(bindir / "pg_restore"), "--no-owner", "--exit-on-error", f"--dbname={restored}",
         str(dump)],
        capture_output=True, text=True, check=False, env=_env(),
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    (tmp_path / "restored").mkdir()
    config, cfg = _config(tmp_path / "restored", {"url": restored, "outage_s": 5})
    status = _status(config)
    assert status["counts"]["verified"] == ARCHIVED
    assert _web_sees(cfg) == (ARCHIVED, ARCHIVED)
