"""The PostgreSQL URL read as libpq reads it (issue 19, items 14 and 15): a password smuggled in
by a percent-encoded parameter name is refused by the config and never printed; a connection that
does not verify its server is named by check-config and doctor."""

from __future__ import annotations

import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest
from support import state_config

from archiver.config import ConfigError
from archiver.doctor.local import check_state
from archiver.lab.postgres import LocalPostgres
from archiver.state.pg_url import redact_url

SECRET = "Db-Secret-Hunter2"
SMUGGLED = [
    f"postgresql://owner@db.example.com/archiver?pass%77ord={SECRET}",
    f"postgresql://owner@db.example.com/archiver?%70assword={SECRET}",
    f"postgresql://owner@db.example.com/archiver?password={SECRET}",
    f"postgresql://owner@db.example.com/archiver?sslpassword={SECRET}",
    f"postgresql://owner:{SECRET}@db.example.com/archiver",
    f"postgres://owner:{SECRET}@db1.example.com,db2.example.com:5433/archiver",
]


@pytest.mark.parametrize("url", SMUGGLED)
def test_the_config_refuses_every_password_libpq_would_read(url: str) -> None:
    with pytest.raises(ConfigError) as refused:
        state_config({"url": url})
    text = "\n".join(refused.value.problems)
    assert "must not contain the password" in text and SECRET not in text


@pytest.mark.parametrize(
    "url",
    [
        *SMUGGLED,
        f"host=db.example.com password={SECRET} dbname=a",
        f"host=db.example.com password='{SECRET} x' dbname=a",
    ],
)
def test_redaction_hides_every_password_libpq_would_read(url: str) -> None:
    shown = redact_url(url)
    assert SECRET not in shown and "db" in shown, shown


def test_redaction_keeps_what_is_not_secret() -> None:
    url = "postgresql://worker@db.example.com:5433/archiver?sslmode=verify-full&application_name=x"
    assert redact_url(url) == url


def test_state_copy_never_prints_a_smuggled_password(
    postgres: LocalPostgres, tmp_path: Path
) -> None:
    source = tmp_path / "ledger.sqlite3"
    sqlite3.connect(source).close()
    target = postgres.create_database() + f"?pass%77ord={SECRET}"
    result = subprocess.run(
        [sys.executable, "-m", "archiver", "state", "copy", "--from", str(source), "--to", target,
         "--config", str(tmp_path / "none.toml")],
        capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert SECRET not in result.stdout + result.stderr, result.stdout + result.stderr
    assert "***" in result.stdout, result.stdout + result.stderr


# --- 15. No silent plaintext to the database ---------------------------------------------------


@pytest.mark.parametrize(
    ("state", "warned"),
    [
        ({"url": "postgresql://w@db.example.com/a"}, True),
        ({"url": "postgresql://w@db.example.com/a?sslmode=require"}, True),
        ({"url": "postgresql://w@db.example.com/a", "sslmode": "prefer"}, True),
        ({"url": "postgresql://w@db.example.com/a?sslmode=verify-full"}, False),
        ({"url": "postgresql://w@db.example.com/a", "sslmode": "verify-ca"}, False),
        ({"url": "postgresql://w@localhost/a"}, False),
        ({"url": "postgresql://w@127.0.0.1:5432/a"}, False),
        ({"url": "postgresql://w@[::1]/a"}, False),
        ({"url": "postgresql:///a?host=/var/run/postgresql"}, False),
        ({"path": "/var/lib/archiver/ledger.sqlite3"}, False),
    ],
)
def test_unverified_tls_is_named(state: dict[str, object], warned: bool) -> None:
    warning = state_config(state).state.unverified_tls()
    assert (warning is not None) == warned, warning
    if warned:
        assert warning is not None and "verify-full" in warning and "db.example.com" in warning


def test_check_config_and_doctor_warn_about_a_remote_database_without_verification(
    postgres: LocalPostgres, tmp_path: Path
) -> None:
    # A real server, reached at 127.0.0.1 but named db.example.com (libpq's hostaddr): as a
    # remote database without sslmode looks to archiver.
    local = postgres.create_database()
    named = local.replace("@127.0.0.1:", "@db.example.com:") + "?hostaddr=127.0.0.1"
    cfg = state_config({"url": named, "outage_s": 2})
    check = check_state(cfg)
    assert check.ok and "warning:" in check.detail and "verify-full" in check.detail, check
    config = tmp_path / "archiver.toml"
    config.write_text(
        '[[pbx]]\nurl = "http://127.0.0.1:9"\nusername = "u"\npassword = "p"\n'
        f'[s3]\nbucket = "archive"\n[state]\nurl = "{named}"\n',
        encoding="utf-8",
    )
    config.chmod(0o600)
    result = subprocess.run(
        [sys.executable, "-m", "archiver", "check-config", "--config", str(config)],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert "does not verify the server" in result.stderr and "db.example.com" in result.stderr
