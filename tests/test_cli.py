"""The `archiver` command as an administrator runs it: a subprocess, a TOML file, exit codes."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import date
from pathlib import Path
from typing import Any

import pytest
from support import daemon_toml, free_port

from archiver.lab.seaweed import SeaweedS3
from archiver.lab.simulator import SimulatorOptions, SimulatorThread

PASSWORD = "Cli-Secret-99173"
DAY = date(2016, 11, 18)


def _toml(
    sim_url: str, s3: SeaweedS3, bucket: str, state: Path, **tables: dict[str, object]
) -> str:
    defaults: dict[str, dict[str, object]] = {
        "poll": {"lookback_days": 0},
        "retry": {"attempts": 2},
    }
    return daemon_toml(sim_url, s3, bucket, state, **(defaults | tables))


@pytest.fixture
def sim() -> Iterator[SimulatorThread]:
    options = SimulatorOptions(
        username="admin", password=PASSWORD, seed=5, start=DAY, days=1, per_day=4,
        max_duration_s=40,
    )  # fmt: skip
    with SimulatorThread(options) as running:
        yield running


def _archiver(
    *args: str, env: dict[str, str], timeout_s: float = 120
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "archiver", *args],
        env=env, capture_output=True, text=True, timeout=timeout_s, check=False,
    )  # fmt: skip


@pytest.fixture
def env(s3_env: dict[str, str]) -> dict[str, str]:
    return {**os.environ, **s3_env, "TEST_PBX_PASSWORD": PASSWORD}


def test_check_config_lists_errors_and_exits_1(tmp_path: Path, env: dict[str, str]) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text('[pbx]\nurl = "ftp://x"\nusername = ""\npasword = "typo"\n[s3]\n', "utf-8")
    result = _archiver("check-config", "--config", str(bad), env=env)
    assert result.returncode == 1
    for line, path in ((2, "pbx[0].url"), (3, "pbx[0].username"), (4, "pbx[0].pasword"),
                       (5, "s3.bucket")):  # fmt: skip
        assert f"{bad}:{line}: at '{path}'" in result.stderr, result.stderr


def test_check_config_ok(tmp_path: Path, env: dict[str, str], sim: SimulatorThread,
                         seaweed: SeaweedS3) -> None:  # fmt: skip
    good = tmp_path / "good.toml"
    good.write_text(_toml(sim.base_url, seaweed, "any-bucket", tmp_path), "utf-8")
    result = _archiver("check-config", "--config", str(good), env=env)
    assert result.returncode == 0, result.stderr
    assert "OK" in result.stdout
    # ARCHIVER_CONFIG is the fallback when --config is not given.
    result = _archiver("check-config", env={**env, "ARCHIVER_CONFIG": str(good)})
    assert result.returncode == 0, result.stderr


def test_run_once_ls_and_status(
    tmp_path: Path, env: dict[str, str], sim: SimulatorThread, seaweed: SeaweedS3, bucket: str
) -> None:
    config = tmp_path / "a.toml"
    config.write_text(_toml(sim.base_url, seaweed, bucket, tmp_path), "utf-8")
    listed = _archiver("ls", "--config", str(config), "--date", DAY.isoformat(), "--json", env=env)
    assert listed.returncode == 0, listed.stderr
    names = json.loads(listed.stdout)
    expected = sum(1 for r in sim.corpus.recordings() if r.valid)
    assert len(names["recordings"]) == expected and names["invalid"] > 0

    # One day: --to defaults to --from.
    result = _archiver("backfill", "--config", str(config), "--from", DAY.isoformat(), env=env)
    assert result.returncode == 0, result.stderr + result.stdout
    status = _archiver("status", "--config", str(config), "--json", env=env)
    document = json.loads(status.stdout)
    counts = document["counts"]
    assert counts["verified"] == expected and counts["failed"] == 0
    # Per PBX, with the time its last listing was answered.
    assert document["pbx"]["pbx"]["counts"]["verified"] == expected
    assert document["pbx"]["pbx"]["last_listing_ok_at"].startswith(str(date.today().year))
    text = _archiver("status", "--config", str(config), env=env).stdout
    assert f"pbx pbx: discovered 0  downloaded 0  transcoded 0  verified {expected}" in text
    assert "last listing OK never" not in text and f"state: sqlite {tmp_path}" in text
    # `retry` without flags says what it looked at.
    retried = _archiver("retry", "--config", str(config), env=env)
    assert retried.stdout.strip() == (
        f"{tmp_path / 'ledger.sqlite3'}: 0 failed recording(s): 0 retryable, 0 failed for good; "
        "re-queued 0"
    )
    # Logs are JSON lines when not on a terminal, and the password is in none of them.
    events = [json.loads(line) for line in result.stdout.splitlines() if line.startswith("{")]
    assert any(event["event"] == "archived" for event in events)
    assert PASSWORD not in result.stdout + result.stderr + listed.stdout + listed.stderr

    # `run --once` polls "today" (PBX time), which holds nothing in 2016: exits 0, archives none.
    once = _archiver("run", "--once", "--config", str(config), env=env)
    assert once.returncode == 0, once.stderr + once.stdout


def test_wrong_password_is_one_clear_error(
    tmp_path: Path, env: dict[str, str], sim: SimulatorThread, seaweed: SeaweedS3, bucket: str
) -> None:
    config = tmp_path / "a.toml"
    config.write_text(_toml(sim.base_url, seaweed, bucket, tmp_path), "utf-8")
    wrong = {**env, "TEST_PBX_PASSWORD": "Not-The-Password-123"}
    result = _archiver("backfill", "--config", str(config), "--from", DAY.isoformat(),
                       "--to", DAY.isoformat(), env=wrong)  # fmt: skip
    assert result.returncode == 5
    assert "refused the username/password" in result.stdout
    assert "Not-The-Password-123" not in result.stdout + result.stderr
    listed = _archiver("ls", "--config", str(config), "--date", DAY.isoformat(), env=wrong)
    assert listed.returncode == 5 and "refused the username/password" in listed.stderr


def test_sigterm_stops_cleanly(
    tmp_path: Path, env: dict[str, str], seaweed: SeaweedS3, bucket: str
) -> None:
    options = SimulatorOptions(username="admin", password=PASSWORD, seed=9, start=DAY, days=1,
                               per_day=60, delay_ms=50)  # fmt: skip
    with SimulatorThread(options) as slow_sim:
        config = tmp_path / "a.toml"
        config.write_text(
            _toml(slow_sim.base_url, seaweed, bucket, tmp_path, daemon={"shutdown_grace_s": 2}),
            "utf-8",
        )
        process = subprocess.Popen(
            [sys.executable, "-m", "archiver", "backfill", "--config", str(config),
             "--from", DAY.isoformat(), "--to", DAY.isoformat()],
            env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )  # fmt: skip
        assert process.stdout is not None
        for line in process.stdout:  # wait until work is under way
            if '"archived"' in line:
                break
        process.send_signal(signal.SIGTERM)
        started = time.monotonic()
        out, err = process.communicate(timeout=60)
        stopped_s = time.monotonic() - started
    assert process.returncode == 4, err  # interrupted: a signal stopped it before it was done
    assert stopped_s < 15
    assert '"stopping"' in out
    interrupted = next(json.loads(line) for line in out.splitlines() if '"interrupted"' in line)
    assert interrupted["unfinished"] + interrupted["days_not_listed"] > 0
    assert list((tmp_path / "work").iterdir()) == []
    status = _archiver("status", "--config", str(config), "--json", env=env)
    counts = json.loads(status.stdout)["counts"]
    assert 0 < counts["verified"] < 60 + 9


def test_daemon_serves_healthz(
    tmp_path: Path, env: dict[str, str], sim: SimulatorThread, seaweed: SeaweedS3, bucket: str
) -> None:
    import socket
    import urllib.request

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    config = tmp_path / "a.toml"
    config.write_text(
        _toml(sim.base_url, seaweed, bucket, tmp_path, http={"listen": f"127.0.0.1:{port}"}),
        "utf-8",
    )
    process = subprocess.Popen(
        [sys.executable, "-m", "archiver", "run", "--config", str(config)],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=2) as r:
                    assert r.status == 200 and r.read() == b"ok\n"
                    break
            except OSError:
                assert time.monotonic() < deadline, "healthz never answered"
                time.sleep(0.2)
    finally:
        process.send_signal(signal.SIGTERM)
        process.communicate(timeout=30)
    assert process.returncode == 0


def test_product_commands_do_not_import_the_lab(tmp_path: Path, env: dict[str, str]) -> None:
    """`archiver run` (and every command but `simulate`) loads no test code; `simulate --help`
    still shows the simulator's options."""
    bad = tmp_path / "bad.toml"
    bad.write_text("[pbx]\n", "utf-8")
    probe = (
        "import sys\n"
        "from archiver.cli import main\n"
        f"for command in ('run', 'check-config'):\n"
        f"    assert main([command, '--config', {str(bad)!r}]) == 1\n"
        "print(sorted(name for name in sys.modules if name.startswith('archiver.lab')))\n"
    )
    loaded = subprocess.run(
        [sys.executable, "-c", probe], env=env, capture_output=True, text=True, check=False
    )
    assert loaded.returncode == 0, loaded.stderr
    assert loaded.stdout.strip() == "[]"
    helped = _archiver("simulate", "--help", env=env)
    assert helped.returncode == 0 and "--per-day" in helped.stdout


def test_help_speaks_to_an_administrator(env: dict[str, str]) -> None:
    """Issue 12 item 9: the top description was a code docstring, exit codes were not listed,
    dates had no format and `--to` was required for one day."""
    top = _archiver("--help", env=env)
    assert top.returncode == 0
    assert "Archive the call recordings" in top.stdout and "wiring" not in top.stdout
    assert "exit codes:" in top.stdout and "YYYY-MM-DD" in top.stdout
    for code, meaning in [
        (2, "bad command line"),
        (4, "stopped by a signal"),
        (5, "could not be reached"),
        (6, "this machine"),
    ]:
        assert f"  {code}  " in top.stdout and meaning in top.stdout, top.stdout
    backfill = _archiver("backfill", "--help", env=env)
    assert "--to YYYY-MM-DD" in backfill.stdout and "default: --from" in backfill.stdout
    bare = _archiver(env=env)
    assert bare.returncode == 2 and "usage:" in bare.stderr


def test_usage_errors_exit_2_with_the_fix(tmp_path: Path, env: dict[str, str]) -> None:
    """A date in another format said `invalid fromisoformat value` and exited 2, the code the
    docs gave for "unreachable"; `ls --pbx istanbul` was a KeyError traceback."""
    bad_date = _archiver("backfill", "--from", "17.11.2016", env=env)
    assert bad_date.returncode == 2
    assert "'17.11.2016' is not a date: write YYYY-MM-DD, e.g. 2016-11-17" in bad_date.stderr
    assert "fromisoformat" not in bad_date.stderr
    config = tmp_path / "a.toml"
    config.write_text(
        '[[pbx]]\nname = "ankara"\nurl = "http://127.0.0.1:9"\nusername = "admin"\n'
        'password_env = "TEST_PBX_PASSWORD"\n[s3]\nbucket = "calls"\n'
        f'[state]\npath = "{tmp_path}/ledger.sqlite3"\n',
        "utf-8",
    )
    for command in ("ls", "backfill"):
        unknown = _archiver(command, "--config", str(config), "--pbx", "istanbul",
                            "--from", "2016-11-17", env=env) if command == "backfill" else (
            _archiver(command, "--config", str(config), "--pbx", "istanbul", env=env))  # fmt: skip
        assert unknown.returncode == 2, unknown.stderr
        assert unknown.stderr.strip().splitlines() == [
            "error: no PBX named 'istanbul' in the configuration; configured: ankara (see --pbx)"
        ]
    backwards = _archiver("backfill", "--config", str(config), "--from", "2016-11-17",
                          "--to", "2016-11-16", env=env)  # fmt: skip
    assert backwards.returncode == 2 and "before --from" in backwards.stderr


def test_read_only_commands_never_create_state(tmp_path: Path, env: dict[str, str]) -> None:
    """Issue 12 item 10: `status` on a wrong path created an empty ledger and reported zeros."""
    state = tmp_path / "typo" / "ledger.sqlite3"
    config = tmp_path / "a.toml"
    config.write_text(
        '[pbx]\nurl = "http://127.0.0.1:9"\nusername = "admin"\npassword_env = "X"\n'
        f'[s3]\nbucket = "calls"\n[state]\npath = "{state}"\n',
        "utf-8",
    )
    for command in (["status"], ["status", "--json"], ["retry"], ["calls"]):
        result = _archiver(*command, "--config", str(config), env=env)
        assert result.returncode == 6, (command, result.stderr)
        assert f"error: no state file at {state}" in result.stderr, result.stderr
        assert "Traceback" not in result.stderr
    assert not state.parent.exists()


def test_named_conditions_are_one_line_not_a_traceback(
    tmp_path: Path, env: dict[str, str], seaweed: SeaweedS3, bucket: str
) -> None:
    """Issue 12 item 4: an endpoint_url without a scheme passed check-config, then `backfill`
    printed 54 lines ending `ValueError: Invalid endpoint`; an [http] listen port in use gave an
    OSError traceback."""
    dead_pbx = f"http://127.0.0.1:{free_port()}"
    no_scheme = tmp_path / "no-scheme.toml"
    no_scheme.write_text(
        _toml(dead_pbx, seaweed, bucket, tmp_path).replace(
            f'"{seaweed.endpoint_url}"', f'"{seaweed.endpoint_url.removeprefix("http://")}"'
        ),
        "utf-8",
    )
    for command in (("check-config",), ("backfill", "--from", "2016-11-17")):
        result = _archiver(*command, "--config", str(no_scheme), env=env)
        assert result.returncode == 1, result.stderr
        assert "at 's3.endpoint_url': must be a URL starting with http://" in result.stderr
        assert "Traceback" not in result.stdout + result.stderr

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        config = tmp_path / "port.toml"
        config.write_text(
            _toml(dead_pbx, seaweed, bucket, tmp_path, http={"listen": f"127.0.0.1:{port}"}),
            "utf-8",
        )
        result = _archiver("run", "--config", str(config), env=env)
    assert result.returncode == 6, result.stdout + result.stderr
    assert result.stderr.strip().splitlines() == [
        f"error: [http] listen = '127.0.0.1:{port}': cannot listen there (address already in "
        "use): is another archiver running? Stop it or choose another port in [http] listen"
    ]
    assert "Traceback" not in result.stdout


def test_a_pbx_that_is_down_retries_visibly_and_stops_at_sigterm(
    tmp_path: Path, env: dict[str, str], seaweed: SeaweedS3, bucket: str
) -> None:
    """Issue 12 item 8: backfill retried silently; retry events carried callable/args/kwargs
    and a doubled prefix; after SIGTERM retries went on for 11 s."""
    config = tmp_path / "a.toml"
    retry: dict[str, object] = {
        "attempts": 20, "wait_initial_s": 0.5, "wait_max_s": 3, "timeout_s": 300
    }  # fmt: skip
    config.write_text(
        _toml(f"http://127.0.0.1:{free_port()}", seaweed, bucket, tmp_path, retry=retry), "utf-8"
    )
    process = subprocess.Popen(
        [sys.executable, "-m", "archiver", "backfill", "--config", str(config),
         "--from", DAY.isoformat()],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    assert process.stdout is not None
    seen: list[dict[str, Any]] = []
    for line in process.stdout:  # the progress line comes within 10 s of the start
        if line.startswith("{"):
            seen.append(json.loads(line))
        if seen and seen[-1]["event"] == "progress":
            break
    process.send_signal(signal.SIGTERM)
    signalled = time.monotonic()
    out, err = process.communicate(timeout=30)
    stopped_in_s = time.monotonic() - signalled
    after = [json.loads(line) for line in out.splitlines() if line.startswith("{")]
    retries = [event for event in seen if event["event"] == "retrying"]
    assert retries, seen
    first = retries[0]
    assert str(first["reason"]).startswith("listing: PBX 'pbx': cannot connect ("), first
    assert (first["stage"], first["pbx"], first["day"]) == ("list", "pbx", DAY.isoformat())
    assert (first["attempt"], first["attempts"]) == (1, 20) and "next_attempt_in_s" in first
    assert not {"callable", "args", "kwargs"} & set(first)
    assert seen[-1]["planned"] == 0 and seen[-1]["done"] == 0 and seen[-1]["elapsed_s"] >= 10
    # After SIGTERM: the shutdown only, at once; the day not listed, so exit 4 (interrupted).
    assert [event["event"] for event in after] == ["stopping", "interrupted", "done"], after
    assert stopped_in_s < 5 and process.returncode == 4, (stopped_in_s, err)
    assert after[1]["days_not_listed"] == 1
