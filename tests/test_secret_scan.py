"""Known secrets never leave the process: every flow an administrator meets — listing, backfill
with PBX faults, one-shot and daemon runs, a wrong password, a TLS failure, an unreachable S3,
configuration errors — runs with a known PBX password and S3 secret key, and every line it
printed (stdout, stderr), every /metrics, /healthz and /readyz body and `status` output is
scanned for them, raw and URL-encoded (passwords travel in query strings).

Along the way: every log event about a recording carries its `pbx` and `uniqueid`.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
from collections.abc import Iterator
from datetime import date, datetime
from pathlib import Path
from urllib.parse import quote, quote_plus

import pytest
import yarl
from support import daemon_toml, free_port, json_events, run_archiver, wait_for

from archiver.lab.seaweed import SeaweedS3
from archiver.lab.simulator import SimulatorOptions, SimulatorThread

# Characters that URL encoding changes, so an encoded leak would not match the raw text.
PASSWORD = "Pbx+Scan/Secret 9&x=1%"
CALLBACK_TOKEN = "Scan-Callback-Token-0123456789"
WRONG_PASSWORD = "Wrong+Pass/word 3&y=2"
DAY = date(2016, 11, 18)


def _forms(secret: str) -> set[str]:
    encoded = yarl.URL.build(path="/", query={"p": secret}).raw_query_string.removeprefix("p=")
    return {secret, quote(secret, safe=""), quote_plus(secret), encoded}


class Transcript:
    """Everything the flows printed or served, scanned at the end."""

    def __init__(self) -> None:
        self.texts: list[tuple[str, str]] = []

    def add(self, label: str, *texts: str) -> None:
        self.texts.extend((label, text) for text in texts)

    def run(self, label: str, *args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
        result = run_archiver(*args, env=env)
        self.add(label, result.stdout, result.stderr)
        return result

    def leaks(self, secrets: list[str]) -> list[str]:
        found = []
        for label, text in self.texts:
            for secret in secrets:
                for form in _forms(secret):
                    if form in text:
                        found.append(f"{label}: {form!r}")
        return found


@pytest.fixture
def transcript() -> Transcript:
    return Transcript()


def test_the_scan_finds_encoded_leaks() -> None:
    scan = Transcript()
    scan.add("x", "GET /cgi-bin/system_cmd.cgi?password=" + quote_plus(PASSWORD))
    scan.add("y", "nothing here")
    assert scan.leaks([PASSWORD]) == [f"x: {quote_plus(PASSWORD)!r}"]


@pytest.fixture
def faulty_sim() -> Iterator[SimulatorThread]:
    options = SimulatorOptions(
        username="admin", password=PASSWORD, seed=21, start=DAY, per_day=8, max_duration_s=20,
        fail_rate=0.15, truncate_rate=0.1, reset_rate=0.1,
    )  # fmt: skip
    with SimulatorThread(options) as running:
        yield running


def test_no_secret_in_any_output(
    tmp_path: Path, s3_env: dict[str, str], seaweed: SeaweedS3, bucket: str,
    faulty_sim: SimulatorThread, transcript: Transcript,
) -> None:  # fmt: skip
    env = {**os.environ, **s3_env, "TEST_PBX_PASSWORD": PASSWORD}
    wrong = {**env, "TEST_PBX_PASSWORD": WRONG_PASSWORD}
    config = tmp_path / "a.toml"
    config.write_text(daemon_toml(faulty_sim.base_url, seaweed, bucket, tmp_path), "utf-8")
    days = ("--from", DAY.isoformat(), "--to", DAY.isoformat())
    cfg = ("--config", str(config))

    listed = transcript.run("ls", "ls", *cfg, "--date", DAY.isoformat(), "--json", env=env)
    assert listed.returncode in (0, 5)  # a listing may meet an injected fault: ls does not retry
    backfill = transcript.run("backfill", "backfill", *cfg, *days, "--log-level", "debug", env=env)
    assert backfill.returncode in (0, 3), backfill.stdout + backfill.stderr
    events = json_events(backfill.stdout)
    assert any(e["event"] == "retrying" for e in events), "no fault was retried"
    for event in events:
        if event["event"] in ("archived", "failed", "empty", "already_present"):
            assert event["pbx"] == "pbx" and event["uniqueid"], event
        if event["event"] == "retrying":
            assert event["pbx"] == "pbx", event
            if event["stage"] != "list":  # a recording's retries name it too
                assert event.get("uniqueid"), json.dumps(event)
    assert any(e.get("uniqueid") for e in events if e["event"] == "retrying")
    status = transcript.run("status", "status", *cfg, "--json", env=env)
    assert status.returncode == 0
    once = transcript.run("run --once", "run", "--once", *cfg, env=env)
    assert once.returncode in (0, 3, 5)

    # One-shot commands exit 5; `archiver run` as a daemon stays up and backs off instead
    # (test_crash.py checks that, and that its output holds no password either).
    for command in (("ls", *cfg), ("backfill", *cfg, *days), ("run", "--once", *cfg)):
        refused = transcript.run(f"wrong password {command[0]}", *command, env=wrong)
        assert refused.returncode == 5, refused.stdout + refused.stderr
        assert "refused the username/password" in refused.stdout + refused.stderr

    # S3 unreachable: a port nobody listens on.
    dead_s3 = tmp_path / "dead-s3.toml"
    dead_s3.write_text(
        config.read_text("utf-8").replace(seaweed.endpoint_url, f"http://127.0.0.1:{free_port()}"),
        "utf-8",
    )
    unreachable = transcript.run("s3 down", "backfill", "--config", str(dead_s3), *days, env=env)
    assert unreachable.returncode == 5 and "s3_unreachable" in unreachable.stdout

    # The password inline in a config others can read: a warning, and never the password.
    inline = tmp_path / "inline.toml"
    inline.write_text(
        config.read_text("utf-8").replace(
            'password_env = "TEST_PBX_PASSWORD"', f'password = "{PASSWORD}"'
        ),
        "utf-8",
    )
    inline.chmod(0o644)
    checked = transcript.run(
        "check-config inline", "check-config", "--config", str(inline), env=env
    )
    assert checked.returncode == 0, checked.stderr
    assert "is readable by other users" in checked.stderr
    started = transcript.run("run inline", "run", "--once", "--config", str(inline), env=env)
    warned = [e for e in json_events(started.stdout) if e["level"] == "warning"]
    assert warned[0]["event"] == "password_file_readable_by_others", warned
    assert warned[0]["path"] == str(inline)
    inline.chmod(0o600)
    private = transcript.run("check-config 0600", "check-config", "--config", str(inline), env=env)
    assert private.returncode == 0 and "readable by other users" not in private.stderr
    broken = tmp_path / "broken.toml"
    broken.write_text(
        f'[pbx]\nurl = "https://admin:{PASSWORD}@pbx:9999/x"\nusername = "admin"\n'
        f'password = "{PASSWORD}"\npassword_env = "{PASSWORD}"\n[s3]\nbucket = "{PASSWORD}"\n',
        "utf-8",
    )
    bad = transcript.run("check-config errors", "check-config", "--config", str(broken), env=env)
    assert bad.returncode == 1 and "pbx[0].url" in bad.stderr

    leaks = transcript.leaks([PASSWORD, WRONG_PASSWORD, seaweed.secret_key])
    assert leaks == [], leaks


def test_no_secret_in_daemon_output_or_endpoints(
    tmp_path: Path, s3_env: dict[str, str], seaweed: SeaweedS3, bucket: str,
    faulty_sim: SimulatorThread, transcript: Transcript,
) -> None:  # fmt: skip
    env = {**os.environ, **s3_env, "TEST_PBX_PASSWORD": PASSWORD}
    port = free_port()
    config = tmp_path / "a.toml"
    text = daemon_toml(
        faulty_sim.base_url, seaweed, bucket, tmp_path,
        http={"listen": f"127.0.0.1:{port}"}, poll={"lookback_days": 0},
        callbacks={"enabled": True, "token": CALLBACK_TOKEN},
    )  # fmt: skip
    config.write_text(text, "utf-8")
    config.chmod(0o600)
    process = subprocess.Popen(
        [sys.executable, "-m", "archiver", "run", "--config", str(config)],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        base = f"http://127.0.0.1:{port}"
        for path in ("/healthz", "/metrics"):
            transcript.add(path, wait_for(base + path))
        transcript.add("/readyz", wait_for(base + "/readyz", status=200))
        # A malformed callback: aiohttp logs its parse error with a traceback that quotes the
        # request line, token and all (issue 11 item 6).
        _send_raw(port, f"GET /pbx/call-result/{CALLBACK_TOKEN}?sonuc=\x01 HTTP/1.1\r\n\r\n")
        _send_raw(port, f"GET /pbx/call-result/{quote(CALLBACK_TOKEN)}?a=\x01 HTTP/1.1\r\n\r\n")
    finally:
        process.send_signal(signal.SIGTERM)
        out, err = process.communicate(timeout=30)
    transcript.add("daemon", out, err)
    assert process.returncode == 0, err
    assert out.count("Error handling request") == 2, "the malformed callbacks were not logged"

    # A TLS failure: the PBX's certificate is not the pinned one (no TLS on the simulator at
    # all: the handshake fails), and the same through `ls`.
    pinned = tmp_path / "pinned.toml"
    pinned.write_text(
        text.replace(faulty_sim.base_url, faulty_sim.base_url.replace("http://", "https://"))
        .replace('password_env = "TEST_PBX_PASSWORD"',
                 'password_env = "TEST_PBX_PASSWORD"\ntls_fingerprint = "' + "ab" * 32 + '"'),
        "utf-8",
    )  # fmt: skip
    listed = transcript.run(
        "tls ls", "ls", "--config", str(pinned), "--date", "2016-11-18", env=env
    )
    assert listed.returncode == 5 and "error: listing: PBX 'pbx'" in listed.stderr
    leaks = transcript.leaks([PASSWORD, seaweed.secret_key, CALLBACK_TOKEN])
    assert leaks == [], leaks


def _send_raw(port: int, request: str) -> None:
    """Send `request` as bytes on a fresh connection and read the (400) answer."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as connection:
        connection.sendall(request.encode("latin-1"))
        assert connection.recv(4096).startswith(b"HTTP/1.")


@pytest.mark.parametrize("password", ["2026", "p"])
def test_short_passwords_leave_the_logs_readable(
    tmp_path: Path, s3_env: dict[str, str], seaweed: SeaweedS3, bucket: str, password: str
) -> None:
    """Issue 12 item 3: with the password `2026` timestamps read `[REDACTED]-11-28` and keys
    `.../[REDACTED]/11/28/...`; with `p` event names became `[REDACTED]oll_done`, so the README's
    `jq 'select(.event == ...)'` recipes matched nothing."""
    day = date(2026, 11, 18)
    options = SimulatorOptions(
        username="admin", password=password, seed=3, start=day, per_day=3, max_duration_s=10
    )
    env = {**os.environ, **s3_env, "TEST_PBX_PASSWORD": password}
    with SimulatorThread(options) as sim:
        config = tmp_path / "a.toml"
        config.write_text(daemon_toml(sim.base_url, seaweed, bucket, tmp_path), "utf-8")
        result = run_archiver(
            "backfill", "--config", str(config), "--from", day.isoformat(), "--to",
            day.isoformat(), "--log-level", "debug", env=env,
        )  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr
    events = json_events(result.stdout)
    names = {event["event"] for event in events}
    assert {"listed", "archived", "done"} <= names, names
    for event in events:
        assert "REDACTED" not in event["timestamp"], event
        datetime.fromisoformat(event["timestamp"])
    keys = [event["key"] for event in events if event["event"] == "archived"]
    assert keys and all("/2026/11/18/20261118-" in key for key in keys), keys
    assert "REDACTED" not in result.stdout + result.stderr
    assert f"password={password}" not in result.stdout + result.stderr
