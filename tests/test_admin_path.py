"""A new administrator's first day, as issue 12 found it, driving the real commands: the
sample config edited for a (simulated) PBX and a real S3 (SeaweedFS), one typo, a wrong
password, S3 down, a wrong state path. Every step ends in one clear message and its exit code;
no traceback reaches the admin."""

from __future__ import annotations

import json
import os
import re
import subprocess
from datetime import date
from pathlib import Path

from support import free_port, run_archiver

from archiver.lab.seaweed import SeaweedS3
from archiver.lab.simulator import SimulatorOptions, SimulatorThread

ROOT = Path(__file__).resolve().parent.parent
PASSWORD = "98765432"  # numeric, as PBX passwords often are
DAY = date(2016, 11, 17)


def _admin_config(sample: str, sim_url: str, seaweed: SeaweedS3, bucket: str, tmp: Path) -> str:
    """The edits README step 2 asks for: the PBX's url, the [s3] table, and (for this test's
    sake) the state under a temporary folder and a free port."""
    edits = {
        'url = "https://192.0.2.10:9999"': f'url = "{sim_url}"',
        'bucket = "call-recordings"': f'bucket = "{bucket}"',
        '# endpoint_url = "https://s3.example.internal:9000"': (
            f'endpoint_url = "{seaweed.endpoint_url}"'
        ),
        '# region = "eu-central-1"': 'region = "us-east-1"',
        'addressing_style = "auto"': 'addressing_style = "path"',
        '"/var/lib/archiver': f'"{tmp}/var/lib/archiver',
        '"/var/cache/archiver': f'"{tmp}/var/cache/archiver',
        'listen = "127.0.0.1:9780"': f'listen = "127.0.0.1:{free_port()}"',
        "settle_s = 120.0": "settle_s = 0",
    }
    for old, new in edits.items():
        assert old in sample, old
        sample = sample.replace(old, new)
    return sample


def test_a_new_admins_first_day(
    tmp_path: Path, s3_env: dict[str, str], seaweed: SeaweedS3, bucket: str
) -> None:
    secrets = tmp_path / "credentials"
    secrets.mkdir()
    (secrets / "pbx-password").write_text("Wrong-Guess-1\n", "utf-8")
    env = {**os.environ, **s3_env, "CREDENTIALS_DIRECTORY": str(secrets)}
    outputs: list[str] = []

    def archiver(*args: str, **overrides: str) -> subprocess.CompletedProcess[str]:
        result = run_archiver(*args, env={**env, **overrides})
        outputs.append(result.stdout + result.stderr)
        return result

    # The README's top: --help says what the tool is, the exit codes and the date format.
    helped = archiver("--help")
    assert "Archive the call recordings" in helped.stdout and "exit codes:" in helped.stdout

    options = SimulatorOptions(username="admin", password=PASSWORD, seed=7, start=DAY,
                               per_day=4, max_duration_s=15)  # fmt: skip
    with SimulatorThread(options) as sim:
        sample = (ROOT / "config.example.toml").read_text("utf-8")
        text = _admin_config(sample, sim.base_url, seaweed, bucket, tmp_path)
        config = tmp_path / "archiver.toml"
        cfg = ("--config", str(config))

        # One typo: a plain message with its line and the fix.
        config.write_text(text.replace("interval_s = 60.0", "intervall_s = 60.0"), "utf-8")
        typo = archiver("check-config", *cfg)
        line = 1 + text.split("interval_s = 60.0")[0].count("\n")
        assert typo.returncode == 1
        assert typo.stderr.strip() == (
            f"{config}:{line}: at 'poll.intervall_s': unknown key 'intervall_s'; "
            "did you mean 'interval_s'?"
        )
        config.write_text(text, "utf-8")
        assert archiver("check-config", *cfg).returncode == 0

        # A wrong password: one line, exit 5, and not the password.
        refused = archiver("ls", *cfg, "--date", DAY.isoformat())
        assert refused.returncode == 5
        assert refused.stderr.strip() == (
            "error: PBX 'pbx' refused the username/password (HTTP 401/403)"
        )
        (secrets / "pbx-password").write_text(PASSWORD + "\n", "utf-8")

        # The right one: the day is listed, backfilled (one day: no --to) and in `status`.
        listed = archiver("ls", *cfg, "--date", DAY.isoformat(), "--json")
        assert listed.returncode == 0, listed.stderr
        valid = len(json.loads(listed.stdout)["recordings"])
        backfill = archiver("backfill", *cfg, "--from", DAY.isoformat())
        assert backfill.returncode == 0, backfill.stdout + backfill.stderr
        status = archiver("status", *cfg)
        assert re.search(rf"pbx pbx: .*verified {valid}\b.*last listing OK 20", status.stdout)

        # S3 down: one event naming the store, exit 5.
        dead_s3 = str(_s3_down(config, seaweed))
        down = archiver("backfill", "--config", dead_s3, "--from", DAY.isoformat())
        assert down.returncode == 5
        assert [e["event"] for e in _events(down.stdout) if e["level"] == "error"] == [
            "s3_unreachable"
        ]

    # A state path with a typo: an error naming it, never an empty ledger.
    wrong_state = tmp_path / "typo.toml"
    wrong_state.write_text(text.replace("/var/lib/archiver/", "/var/lib/archvier/"), "utf-8")
    missing = archiver("status", "--config", str(wrong_state))
    assert missing.returncode == 6
    assert missing.stderr.startswith(f"error: no state file at {tmp_path}/var/lib/archvier/")

    assert not [out for out in outputs if "Traceback" in out]
    assert not [out for out in outputs if PASSWORD in out]


def _s3_down(config: Path, seaweed: SeaweedS3) -> Path:
    dead = config.with_name("s3-down.toml")
    text = config.read_text("utf-8").replace(
        seaweed.endpoint_url, f"http://127.0.0.1:{free_port()}"
    )
    dead.write_text(text, "utf-8")
    return dead


def _events(text: str) -> list[dict[str, object]]:
    return [json.loads(line) for line in text.splitlines() if line.startswith("{")]
