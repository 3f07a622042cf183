"""A person's requests through the real commands, on SQLite and PostgreSQL, on SeaweedFS and
moto: `archiver erase` destroys what may go, keeps (and names) what a hold or a min_days rule
keeps, masks the number in the call log; `archiver export` writes the recordings byte for byte
with a manifest and records the export in the access log."""

from __future__ import annotations

import csv
import hashlib
import io
import json
import zipfile
from pathlib import Path
from typing import Any

import pytest
from retention_support import archive, lifecycle_config, recording
from test_retention import gone, intact, run

from archiver.config import Config, S3Config
from archiver.state import State

NUMBER = "905412535962"
RULES: list[dict[str, Any]] = [
    {"name": "trading", "trunk": "trunk-sip-trading", "keep_days": 2555, "min_days": 1825},
    {"keep_days": 730},
]


def test_an_erasure_destroys_what_may_go_and_names_what_it_keeps(
    state: State, state_cfg: Config, locked_s3: S3Config, tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:  # fmt: skip
    cfg, path = lifecycle_config(state_cfg, locked_s3, tmp_path, retention=RULES)
    config = ["--config", str(path)]
    erasable = [archive(state, cfg, recording(20 + n, n, callee=NUMBER)) for n in range(2)]
    as_caller = archive(state, cfg, recording(5, 3, caller="05412535962", callee="100"))
    held = archive(state, cfg, recording(30, 4, callee=NUMBER))
    trading = archive(state, cfg, recording(40, 5, callee=NUMBER, trunk="trunk-sip-trading"))
    other = archive(state, cfg, recording(50, 6, callee="903123320404"))
    code, _, err = run(capsys, "hold", "add", *config, "--case", "DAVA-7", "--key",
                       held.entry.object_key)  # fmt: skip
    assert code == 0, err
    call_id = state.calls.begin("pbx", NUMBER, {"telefon": "0541 253 59 62", "dp": "1"})
    state.calls.record_event(number=NUMBER, status="ANSWER", kind="final", ended=True,
                             source="127.0.0.1")  # fmt: skip

    code, out, err = run(capsys, "erase", *config, "--number", "+90 (541) 253-59-62", "--ref",
                         "KVKK-2026-31", "--dry-run")  # fmt: skip
    assert code == 0, err
    assert "5 archived recording(s) of this number, 3 to erase, 2 kept" in out
    assert "held (case DAVA-7)" in out and "trading min_days=1825: may be erased from" in out
    assert all(intact(cfg, state, i) for i in [*erasable, as_caller, held, trading])

    code, out, err = run(capsys, "erase", *config, "--number", "+90 (541) 253-59-62", "--ref",
                         "KVKK-2026-31", "--yes", "--json")  # fmt: skip
    assert code == 3, err  # some were kept
    document = json.loads(out)
    assert document["request"] == "KVKK-2026-31" and document["counts"]["destroyed"] == 3
    kept = {k["key"]: k for k in document["kept"]}
    assert kept[held.entry.object_key]["cases"] == ["DAVA-7"]
    assert kept[trading.entry.object_key]["may_go_at"] is not None
    assert all(gone(cfg, state, i) for i in [*erasable, as_caller])
    assert all(intact(cfg, state, i) for i in (held, trading, other))
    logged = state.destructions.of_recording(as_caller.rec.key)
    assert logged is not None and logged.reason == "erasure"
    assert logged.basis == "request KVKK-2026-31" and logged.command.startswith("archiver erase")
    call = state.calls.get(call_id)
    assert call is not None and call.number == "erased" and call.params["telefon"] == "erased"
    assert call.params["dp"] == "1" and document["call_log_rows_masked"] == 2
    assert state.calls.calls(number=NUMBER) == []

    code, out, _ = run(capsys, "erase", *config, "--number", NUMBER, "--ref", "KVKK-2026-31",
                       "--yes")  # fmt: skip
    assert code == 3 and "destroyed 0, kept 2" in out  # asked again: only the kept remain


def test_erase_refuses_bad_input_and_deletes_nothing(
    state: State, state_cfg: Config, s3_env: dict[str, str], s3_config: S3Config, tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:  # fmt: skip
    cfg, path = lifecycle_config(state_cfg, s3_config, tmp_path)
    item = archive(state, cfg, recording(20, 1, callee=NUMBER))
    for number, ref, message in (
        ("0541abc", "R1", "is not a phone number"),
        (NUMBER, "R 1; rm", "is not a reference"),
    ):
        code, _, err = run(capsys, "erase", "--config", str(path), "--number", number, "--ref",
                           ref, "--yes")  # fmt: skip
        assert code == 2 and message in err and "nothing erased" in err
    code, _, err = run(capsys, "erase", "--config", str(path), "--number", NUMBER, "--ref", "R1")
    assert code == 2 and "give --yes" in err
    assert intact(cfg, state, item)


def test_an_export_holds_the_recordings_byte_for_byte_with_a_manifest(
    state: State, state_cfg: Config, locked_s3: S3Config, tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:  # fmt: skip
    cfg, path = lifecycle_config(state_cfg, locked_s3, tmp_path)
    mine = [archive(state, cfg, recording(3 + n, n, callee=NUMBER)) for n in range(3)]
    archive(state, cfg, recording(4, 9, callee="903123320404"))
    out = tmp_path / "request.zip"
    code, printed, err = run(capsys, "export", "--config", str(path), "--number", "0541 253 59 62",
                             "--ref", "KVKK-2026-40", "--out", str(out))  # fmt: skip
    assert code == 0, err
    assert "3 recording(s)" in printed and not Path(f"{out}.part").exists()
    with zipfile.ZipFile(out) as archive_zip:
        names = archive_zip.namelist()
        manifest = list(csv.DictReader(io.StringIO(archive_zip.read("manifest.csv").decode())))
        request = archive_zip.read("request.txt").decode()
        by_key = {row["key"]: row for row in manifest}
        for item in mine:
            row = by_key[item.entry.object_key]
            member = f"recordings/{item.entry.object_key.rsplit('/', 1)[-1]}"
            data = archive_zip.read(member)
            assert data == item.data  # byte for byte as archived
            assert row["sha256"] == hashlib.sha256(data).hexdigest()
            assert row["started_at"] == item.entry.started_at.isoformat()
            assert row["source_sha256"] == hashlib.sha256(item.rec.key.encode()).hexdigest()
            assert (row["caller"], row["callee"], row["duration_s"]) == ("100", NUMBER, "25")
    assert len(names) == 5 and "request: KVKK-2026-40" in request
    (event,) = state.access_log.events(action="export")
    assert event.item_count == 3 and event.detail == "request KVKK-2026-40"
    assert set(event.object_keys) == {item.entry.object_key for item in mine}
    code, _, err = run(capsys, "export", "--config", str(path), "--number", NUMBER, "--ref",
                       "KVKK-2026-40", "--out", str(out))  # fmt: skip
    assert code == 2 and "exists" in err
    code, _, err = run(capsys, "export", "--config", str(path), "--number", "05x1", "--ref",
                       "K", "--out", str(tmp_path / "x.zip"))  # fmt: skip
    assert code == 2 and "is not a phone number" in err
