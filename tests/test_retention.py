"""`archiver retention run|report` and `archiver hold` through the real commands, on SQLite and
PostgreSQL, on SeaweedFS and on moto (both with Object Lock enabled): expired recordings are
destroyed in the store (every version), the catalogue and the ledger, once, logged in the hash
chain; held and young ones stay; a run that would destroy too much stops; a killed run is
finished by the next; the store's own lock is respected."""

from __future__ import annotations

import json
import os
import pty
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

import pytest
from retention_support import Archived, archive, lifecycle_config, recording

from archiver.cli import main
from archiver.config import Config, S3Config
from archiver.logs import configure_logging
from archiver.s3 import S3Store, StoreError
from archiver.state import Claim, State


def run(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    """`archiver ARGS` in this process; its exit code, stdout and stderr."""
    try:
        code = main(list(args))
    finally:
        # main() points the logs at the captured stderr, which closes after the test: later
        # fixtures (a PostgreSQL migration's log line) must not write there.
        configure_logging(level="info", stream=sys.__stderr__)
    out, err = capsys.readouterr()
    return code, out, err


def gone(cfg: Config, state: State, item: Archived) -> bool:
    """Destroyed everywhere archiver keeps it: no version in the store, no catalogue row, the
    ledger says destroyed."""
    store = S3Store(cfg.s3)
    row = state.ledger.get(item.rec.key)
    return (
        store.version_ids(item.entry.object_key) == []
        and store.head(item.entry.object_key) is None
        and state.catalogue.get(item.entry.object_key) is None
        and row is not None
        and row.state == "destroyed"
    )


def intact(cfg: Config, state: State, item: Archived) -> bool:
    """Still archived, byte for byte."""
    store = S3Store(cfg.s3)
    row = state.ledger.get(item.rec.key)
    return (
        store.get_bytes(item.entry.object_key) == item.data
        and state.catalogue.get(item.entry.object_key) is not None
        and row is not None
        and row.state == "verified"
    )


@pytest.fixture
def setup(
    state: State, state_cfg: Config, locked_s3: S3Config, tmp_path: Path
) -> tuple[Config, Path]:
    return lifecycle_config(state_cfg, locked_s3, tmp_path)


def test_a_run_destroys_the_expired_and_keeps_the_held_and_the_young(
    state: State, setup: tuple[Config, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    cfg, path = setup
    old = [archive(state, cfg, recording(400 + n, n)) for n in range(3)]
    held = archive(state, cfg, recording(420, 7, callee="905412535962"))
    young = archive(state, cfg, recording(10, 8))
    # More versions of one expired object (the latest the same bytes again): destruction must
    # reach every version.
    S3Store(cfg.s3).put_bytes(old[0].entry.object_key, b"another upload of the same call")
    S3Store(cfg.s3).put_bytes(old[0].entry.object_key, old[0].data)
    code, out, err = run(capsys, "hold", "add", "--config", str(path), "--case", "DAVA-2026-114",
                         "--number", "+90 541 253 59 62", "--note", "dispute")  # fmt: skip
    assert code == 0, err
    assert "covers 1 archived recording(s)" in out and "S3 legal hold set on 1" in out
    assert S3Store(cfg.s3).lock_state(held.entry.object_key).legal_hold

    code, out, err = run(capsys, "retention", "run", "--config", str(path), "--dry-run", "--json")
    assert code == 0, err
    plan = json.loads(out)
    assert sorted(d["key"] for d in plan["due"]) == sorted(o.entry.object_key for o in old)
    assert [(k["key"], k["cases"]) for k in plan["kept"]] == [
        (held.entry.object_key, ["DAVA-2026-114"])
    ]
    assert all(intact(cfg, state, item) for item in [*old, held, young])  # a dry run

    code, out, err = run(capsys, "retention", "run", "--config", str(path), "--yes")
    assert code == 0, err
    assert "destroyed 3, kept 1, failed 0: ok" in out
    assert all(gone(cfg, state, item) for item in old)
    assert intact(cfg, state, held) and intact(cfg, state, young)
    log = state.destructions
    assert log.count() == 3 and log.verify().intact
    first = log.of_recording(old[0].rec.key)
    assert first is not None and first.versions == 3 and first.reason == "retention"
    assert first.basis == "retention[0] keep_days=365" and first.command == "archiver retention run"
    assert first.source_sha256 is not None and first.caller == "100"

    code, out, _ = run(capsys, "retention", "run", "--config", str(path), "--yes")
    assert code == 0 and "destroyed 0, kept 1, failed 0: ok" in out  # nothing twice
    assert log.count() == 3

    code, out, _ = run(capsys, "status", "--config", str(path), "--json")
    status = json.loads(out)
    assert status["counts"]["destroyed"] == 3 and status["destroyed"] == 3


def test_the_report_lists_a_period_by_day_and_checks_the_chain(
    state: State, setup: tuple[Config, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    cfg, path = setup
    items = [archive(state, cfg, recording(500, n)) for n in range(2)]
    assert run(capsys, "retention", "run", "--config", str(path), "--yes")[0] == 0
    today = state.destructions.between(items[0].entry.started_at, _tomorrow())[0].at
    day = today.astimezone(items[0].entry.started_at.tzinfo).date().isoformat()
    code, out, _ = run(capsys, "retention", "report", "--config", str(path), "--from", day,
                       "--to", day, "--json")  # fmt: skip
    assert code == 0
    report = json.loads(out)
    assert report["per_day"] == {day: 2} and report["chain"]["intact"]
    assert {row["object_key"] for row in report["destructions"]} == {
        i.entry.object_key for i in items
    }
    code, out, _ = run(capsys, "retention", "report", "--config", str(path), "--from", day,
                       "--to", day, "--csv")  # fmt: skip
    assert code == 0 and out.splitlines()[0].startswith("destroyed_at,day,recording_key")
    assert len(out.splitlines()) == 3
    code, _, err = run(capsys, "retention", "report", "--config", str(path), "--from", day,
                       "--to", "2000-01-01")  # fmt: skip
    assert code == 2 and "before --from" in err


def _tomorrow() -> Any:
    from datetime import UTC, datetime, timedelta

    return datetime.now(UTC) + timedelta(days=1)


def test_a_run_over_max_per_run_stops_unless_forced(
    state: State, state_cfg: Config, s3_env: dict[str, str], s3_config: S3Config, tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:  # fmt: skip
    cfg, path = lifecycle_config(state_cfg, s3_config, tmp_path, destruction={"max_per_run": 1})
    items = [archive(state, cfg, recording(400, n)) for n in range(2)]
    code, _, err = run(capsys, "retention", "run", "--config", str(path), "--yes")
    assert code == 3 and "more than [destruction] max_per_run 1" in err
    assert all(intact(cfg, state, item) for item in items)
    last = state.destructions.last_run()
    assert last is not None and last.outcome == "stopped"
    code, _, err = run(capsys, "retention", "run", "--config", str(path), "--yes", "--force")
    assert code == 0, err
    assert all(gone(cfg, state, item) for item in items)


def test_without_a_terminal_or_yes_nothing_is_destroyed(
    state: State, state_cfg: Config, s3_env: dict[str, str], s3_config: S3Config, tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:  # fmt: skip
    cfg, path = lifecycle_config(state_cfg, s3_config, tmp_path)
    item = archive(state, cfg, recording(400, 1))
    code, _, err = run(capsys, "retention", "run", "--config", str(path))
    assert code == 2 and "give --yes" in err
    assert intact(cfg, state, item)


def _on_a_terminal(path: Path, answer: bytes) -> tuple[int, str]:
    """`archiver retention run` with a terminal for its standard input, answering `answer`."""
    leader, follower = pty.openpty()
    process = subprocess.Popen(
        [sys.executable, "-m", "archiver", "retention", "run", "--config", str(path)],
        stdin=follower, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
    )  # fmt: skip
    os.close(follower)
    os.write(leader, answer)
    output, _ = process.communicate(timeout=120)
    os.close(leader)
    return process.returncode, output.decode()


def test_on_a_terminal_the_dry_run_is_shown_and_confirmed(
    state: State, state_cfg: Config, s3_env: dict[str, str], s3_config: S3Config, tmp_path: Path
) -> None:
    cfg, path = lifecycle_config(state_cfg, s3_config, tmp_path)
    item = archive(state, cfg, recording(400, 1))
    code, output = _on_a_terminal(path, b"no\n")
    assert code == 0 and "destroy  " in output and "Destroy 1 recording(s)?" in output
    assert "nothing destroyed" in output and intact(cfg, state, item)
    code, output = _on_a_terminal(path, b"yes\n")
    assert code == 0, output
    assert "destroyed 1, kept 0, failed 0: ok" in output and gone(cfg, state, item)


def test_a_run_killed_between_the_store_and_the_log_is_finished_by_the_next(
    state: State, setup: tuple[Config, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    cfg, path = setup
    first, second = (archive(state, cfg, recording(400, n)) for n in range(2))
    for item, delete in ((first, True), (second, False)):
        claim = state.destructions.claim(
            item.entry, reason="retention", basis="retention[0]",
            command="archiver retention run", username="killed",
        )  # fmt: skip
        assert isinstance(claim, Claim)
        if delete:  # killed after the store deleted, before the log was written
            S3Store(cfg.s3).delete_every_version(item.entry.object_key)
    assert state.catalogue.get(first.entry.object_key) is not None  # the half-done state
    code, _, err = run(capsys, "retention", "run", "--config", str(path), "--yes")
    assert code == 0, err
    assert gone(cfg, state, first) and gone(cfg, state, second)
    assert state.destructions.count() == 2 and state.destructions.pending() == []
    resumed = state.destructions.of_recording(first.rec.key)
    assert resumed is not None and resumed.username == "killed" and resumed.versions == 0


def test_a_delete_the_store_refuses_is_a_failure_and_loses_nothing(
    state: State, setup: tuple[Config, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    """An S3 legal hold set outside archiver: the store (SeaweedFS, moto) refuses the delete;
    the run says so, exits 3 and the recording stays archived, claim dropped."""
    cfg, path = setup
    item = archive(state, cfg, recording(400, 1))
    S3Store(cfg.s3).set_legal_hold(item.entry.object_key, on=True)
    code, out, _ = run(capsys, "retention", "run", "--config", str(path), "--yes")
    assert code == 3 and "the store refused to delete it" in out
    assert intact(cfg, state, item) and state.destructions.pending() == []
    S3Store(cfg.s3).set_legal_hold(item.entry.object_key, on=False)
    assert run(capsys, "retention", "run", "--config", str(path), "--yes")[0] == 0
    assert gone(cfg, state, item)


def test_retain_days_locks_uploads_and_destruction_waits_for_it(
    state: State, state_cfg: Config, locked_s3: S3Config, tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:  # fmt: skip
    cfg, path = lifecycle_config(state_cfg, locked_s3, tmp_path, retention=[{"keep_days": 30}],
                                 s3_extra={"retain_days": 60})  # fmt: skip
    locked = archive(state, cfg, recording(45, 1))  # past keep_days, inside the store's lock
    lock = S3Store(cfg.s3).lock_state(locked.entry.object_key)
    assert lock.mode == "GOVERNANCE" and lock.retain_until is not None
    assert abs((lock.retain_until - locked.rec.started_at).days - 60) <= 1
    with pytest.raises(StoreError):  # the store itself refuses
        S3Store(cfg.s3).delete_every_version(locked.entry.object_key)
    code, out, err = run(capsys, "retention", "run", "--config", str(path), "--dry-run")
    assert code == 0, err
    assert "0 to destroy" in out and "1 past keep_days but still locked in the store" in out
    assert run(capsys, "retention", "run", "--config", str(path), "--yes")[0] == 0
    assert intact(cfg, state, locked)


def test_holds_bad_input_is_refused_and_release_clears_the_store(
    state: State, setup: tuple[Config, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    cfg, path = setup
    item = archive(state, cfg, recording(400, 1))
    config = ["--config", str(path)]
    for bad, message in (
        (["--case", "C1", "--number", "0312abc"], "is not a phone number"),
        (["--case", "C1", "--from", "2026-02-01", "--to", "2026-01-01"], "before --from"),
        (["--case", "C1"], "exactly one of"),
        (["--case", "C1", "--number", "100", "--key", "k"], "exactly one of"),
        (["--case", "C 1", "--number", "100"], "is not a reference"),
        (["--case", "C1", "--number", "100", "--pbx", "pbx"], "--pbx goes with"),
    ):
        code, _, err = run(capsys, "hold", "add", *config, *bad)
        assert code == 2 and message in err, (bad, err)
    assert state.holds.listed() == []
    code, _, err = run(capsys, "hold", "release", *config, "--case", "NO-SUCH")
    assert code == 2 and "no active hold for case 'NO-SUCH'" in err
    day = item.entry.started_at.date().isoformat()
    code, out, err = run(capsys, "hold", "add", *config, "--case", "C1", "--from", day, "--to",
                         day, "--pbx", "pbx")  # fmt: skip
    assert code == 0, err
    code, out, _ = run(capsys, "hold", "list", *config, "--json")
    (listed,) = json.loads(out)["holds"]
    assert listed["case_ref"] == "C1" and listed["recordings"] == 1 and listed["active"]
    assert run(capsys, "retention", "run", *config, "--yes")[0] == 0
    assert intact(cfg, state, item)  # held
    code, out, err = run(capsys, "hold", "release", *config, "--case", "C1")
    assert code == 0 and "S3 legal hold cleared on 1" in out, err
    assert not S3Store(cfg.s3).lock_state(item.entry.object_key).legal_hold
    assert run(capsys, "retention", "run", *config, "--yes")[0] == 0
    assert gone(cfg, state, item)


def test_two_processes_destroying_at_once_destroy_each_recording_once(
    state: State, state_cfg: Config, s3_env: dict[str, str], s3_config: S3Config, tmp_path: Path
) -> None:
    cfg, path = lifecycle_config(state_cfg, s3_config, tmp_path)
    items = [archive(state, cfg, recording(400 + n, n)) for n in range(12)]
    env = {**os.environ, "ARCHIVER_CONFIG": str(path)}
    results: list[subprocess.CompletedProcess[str]] = []

    def one() -> None:
        results.append(subprocess.run(
            [sys.executable, "-m", "archiver", "retention", "run", "--yes", "--json"],
            env=env, capture_output=True, text=True, timeout=300, check=False,
        ))  # fmt: skip

    threads = [threading.Thread(target=one) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert [r.returncode for r in results] == [0, 0], [r.stderr[-2000:] for r in results]
    destroyed = [len(json.loads(r.stdout)["destroyed"]) for r in results]
    assert sum(destroyed) == 12  # each once, by one of the two
    assert state.destructions.count() == 12 and state.destructions.verify().intact
    assert all(gone(cfg, state, item) for item in items)


def test_no_rule_means_nothing_is_destroyed_and_it_says_so(
    state: State, state_cfg: Config, s3_env: dict[str, str], s3_config: S3Config, tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:  # fmt: skip
    cfg, path = lifecycle_config(state_cfg, s3_config, tmp_path, retention=[])
    item = archive(state, cfg, recording(4000, 1))
    code, out, err = run(capsys, "retention", "run", "--config", str(path), "--yes")
    assert code == 0 and "kept forever" in err and "destroyed 0" in out
    assert intact(cfg, state, item)
