"""`archiver state backup` (issue 23 item 4): a consistent SQLite copy taken while `archiver run`
archives, and the drill an administrator would run: back up mid-run, restore onto a fresh state
path, run again: nothing uploaded twice, nothing lost."""

from __future__ import annotations

import json
import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import time
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from support import daemon_toml, free_port, json_events, metric_value, run_archiver, wait_for

from archiver.lab.seaweed import SeaweedS3
from archiver.lab.simulator import SimulatorOptions, SimulatorThread
from archiver.state.backup import backup_sqlite

PASSWORD = "Backup-Drill-Secret-31"
IST = ZoneInfo("Europe/Istanbul")


def _config(tmp_path: Path, state: Path, *, url: str | None = None) -> Path:
    config = tmp_path / f"{state.name}.toml"
    text = (
        '[pbx]\nurl = "http://127.0.0.1:1"\nusername = "admin"\npassword = "x"\n'
        '[s3]\nbucket = "unused"\n'
        f'[state]\npath = "{state / "ledger.sqlite3"}"\n'
    )
    if url is not None:
        text += f'url = "{url}"\n'
    config.write_text(text, "utf-8")
    return config


def _made_state(folder: Path, rows: int) -> Path:
    """A state made by archiver itself (`archiver status` creates nothing, so open it once)."""
    from archiver.config import parse_config
    from archiver.names import parse_name
    from archiver.state import open_state

    cfg = parse_config(
        {"pbx": {"url": "http://127.0.0.1:1", "username": "u", "password": "p"},
         "s3": {"bucket": "unused"}, "state": {"path": str(folder / "ledger.sqlite3")}},
        "test",
    )  # fmt: skip
    state = open_state(cfg)
    try:
        state.ledger.discover(
            parse_name(
                "pbx", "trunk1", f"20161118-0700{n:02d}-100-200-14794416{n:02d}.1-5.gsm", IST
            )
            for n in range(rows)
        )
    finally:
        state.close()
    return folder / "ledger.sqlite3"


def _env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if not k.startswith("ARCHIVER_")}


def test_backup_refuses_to_overwrite_without_force(tmp_path: Path) -> None:
    _made_state(tmp_path / "state", 3)
    config = _config(tmp_path, tmp_path / "state")
    target = tmp_path / "state.bak"
    target.write_text("an older backup", "utf-8")
    refused = run_archiver("state", "backup", "--config", str(config), "--to", str(target),
                           env=_env())  # fmt: skip
    assert refused.returncode == 6, refused
    assert f"{target} exists" in refused.stderr and "--force" in refused.stderr
    assert target.read_text("utf-8") == "an older backup"
    forced = run_archiver("state", "backup", "--config", str(config), "--to", str(target),
                          "--force", env=_env())  # fmt: skip
    assert forced.returncode == 0, forced
    assert "recordings" in forced.stdout and "3 rows" in forced.stdout
    with sqlite3.connect(target) as copy:
        assert copy.execute("SELECT COUNT(*) FROM recordings").fetchone() == (3,)
        assert copy.execute("PRAGMA journal_mode").fetchone() == ("delete",)  # one file
    assert target.stat().st_mode & 0o777 == 0o600
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith(".")) == []


def test_backup_says_what_to_do_when_it_cannot(tmp_path: Path) -> None:
    state = tmp_path / "state"
    missing = run_archiver("state", "backup", "--config", str(_config(tmp_path, state)),
                           "--to", str(tmp_path / "a.bak"), env=_env())  # fmt: skip
    assert missing.returncode == 6 and "no state file at" in missing.stderr, missing
    assert not (tmp_path / "a.bak").exists() and not state.exists()
    _made_state(state, 1)
    no_folder = run_archiver("state", "backup", "--config", str(_config(tmp_path, state)),
                             "--to", str(tmp_path / "nowhere" / "a.bak"), env=_env())  # fmt: skip
    assert no_folder.returncode == 6 and "is not a folder" in no_folder.stderr
    itself = run_archiver("state", "backup", "--config", str(_config(tmp_path, state)),
                          "--to", str(state / "ledger.sqlite3"), "--force", env=_env())  # fmt: skip
    assert itself.returncode == 6 and "is the state itself" in itself.stderr
    postgres = _config(tmp_path, tmp_path / "pg", url="postgresql://archiver@127.0.0.1/archiver")
    pg = run_archiver("state", "backup", "--config", str(postgres), "--to",
                      str(tmp_path / "pg.bak"), env=_env())  # fmt: skip
    assert pg.returncode == 1 and "pg_dump" in pg.stderr, pg


def _objects(seaweed: SeaweedS3, bucket: str) -> dict[str, tuple[str, datetime]]:
    """Every object in the bucket: key -> (ETag, LastModified). A second upload of a key
    changes its LastModified."""
    client = seaweed.client()
    found: dict[str, tuple[str, datetime]] = {}
    for page in client.get_paginator("list_objects_v2").paginate(Bucket=bucket):
        for item in page.get("Contents", []):
            found[item["Key"]] = (item["ETag"], item["LastModified"])
    return found


def _ended(body: str) -> float:
    return sum(
        metric_value(body, "archiver_recordings_total", pbx="pbx", outcome=outcome)
        for outcome in ("archived", "already_present", "empty", "failed")
    )


def _verified(state_file: Path) -> int:
    with sqlite3.connect(state_file) as db:
        row = db.execute("SELECT COUNT(*) FROM recordings WHERE state = 'verified'").fetchone()
    return int(row[0])


def test_drill_back_up_mid_run_restore_run_again(
    tmp_path: Path, s3_env: dict[str, str], seaweed: SeaweedS3, bucket: str
) -> None:
    yesterday = datetime.now(IST).date() - timedelta(days=1)
    # Slow answers (300 ms a request, one at a time) so that the run lasts long enough to be
    # backed up in the middle.
    options = SimulatorOptions(username="admin", password=PASSWORD, seed=23, start=yesterday,
                               days=1, per_day=20, max_duration_s=8, timezone=IST.key,
                               junk=False, odd_names=False, delay_ms=300)  # fmt: skip
    env = {**_env(), **s3_env, "TEST_PBX_PASSWORD": PASSWORD}
    env.pop("NOTIFY_SOCKET", None)
    port = free_port()
    first_state, fresh_state = tmp_path / "first", tmp_path / "restored"
    backup = tmp_path / "backups" / "ledger.bak"
    backup.parent.mkdir()
    with SimulatorThread(options) as sim:
        total = sum(1 for r in sim.corpus.recordings() if r.valid)
        tables: dict[str, Any] = {"http": {"listen": f"127.0.0.1:{port}"},
                                  "pbx": {"max_concurrent_requests": 1},
                                  "transcode": {"workers": 1}}  # fmt: skip
        first = tmp_path / "first.toml"
        first.write_text(daemon_toml(sim.base_url, seaweed, bucket, first_state, **tables))
        daemon = subprocess.Popen(
            [sys.executable, "-m", "archiver", "run", "--config", str(first)],
            env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )  # fmt: skip
        try:
            base = f"http://127.0.0.1:{port}"
            while _ended(wait_for(f"{base}/metrics")) < 3:
                time.sleep(0.1)
            # What `archiver state backup` runs (its command line is tested above), in this
            # process: a new interpreter's start-up on a loaded machine could outlast the run.
            made = backup_sqlite(first_state / "ledger.sqlite3", backup)
            at_backup = _verified(backup)
            deadline = time.monotonic() + 120
            while _ended(body := wait_for(f"{base}/metrics")) < total:
                assert time.monotonic() < deadline, body
                time.sleep(0.2)
        finally:
            daemon.send_signal(signal.SIGTERM)
            out, err = daemon.communicate(timeout=60)
        assert daemon.returncode == 0, err + out
        before = _objects(seaweed, bucket)
        after_first = _verified(first_state / "ledger.sqlite3")

        # Restore onto a fresh state path (the old one could be a lost disk), run again.
        fresh_state.mkdir(mode=0o700)
        shutil.copy2(backup, fresh_state / "ledger.sqlite3")
        second = tmp_path / "restored.toml"
        second.write_text(daemon_toml(sim.base_url, seaweed, bucket, fresh_state, **tables))
        again = run_archiver("run", "--once", "--config", str(second), env=env, timeout_s=180)
        assert again.returncode == 0, again.stderr + again.stdout
    (done,) = [e for e in json_events(again.stdout) if e.get("event") == "done"]
    after = _objects(seaweed, bucket)
    counts = {
        "recordings": total, "verified_in_backup": at_backup,
        "verified_after_first_run": after_first, "objects_after_first_run": len(before),
        "second_run_archived": done["archived"],
        "second_run_already_present": done["already_present"],
        "verified_after_restore_and_run": _verified(fresh_state / "ledger.sqlite3"),
        "objects_after_second_run": len(after),
        "objects_rewritten": sum(1 for key in before if after.get(key) != before[key]),
    }  # fmt: skip
    print("drill:", json.dumps(counts))
    print(made)
    # The backup was taken mid-run: some recordings were archived after it.
    assert 0 < at_backup < total
    assert after_first == len(before) == total
    # Nothing uploaded twice: the restored state did not know the later ones, found them in S3.
    assert done["archived"] == 0
    assert done["already_present"] == total - at_backup
    assert counts["objects_rewritten"] == 0 and after.keys() == before.keys()
    # Nothing lost: every recording verified in the restored state.
    assert counts["verified_after_restore_and_run"] == total
    assert done["failed"] == 0
