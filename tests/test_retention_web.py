"""The web archive after a destruction: the recording is gone from search, its audio URL
answers 410 Gone (not 404: it existed and was destroyed on purpose), and the status view shows
the last destruction run (when, how many) and the next."""

from __future__ import annotations

import json
from datetime import timedelta
from pathlib import Path
from urllib.parse import quote
from zoneinfo import ZoneInfo

import pytest
from retention_support import archive, lifecycle_config, recording
from test_retention import run
from web_support import USERS, Client, serving, web_table

from archiver.config import Config, S3Config
from archiver.state import State


def test_a_destroyed_recording_is_gone_from_search_and_its_audio_answers_410(
    state: State, state_cfg: Config, s3_env: dict[str, str], s3_config: S3Config, tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:  # fmt: skip
    cfg, path = lifecycle_config(state_cfg, s3_config, tmp_path, web=web_table(tmp_path),
                                 destruction={"every_days": 7})  # fmt: skip
    old = archive(state, cfg, recording(400, 1))
    young = archive(state, cfg, recording(3, 2))
    with serving(cfg) as site:
        client = Client(site.url)
        assert client.login("admin", USERS["admin"]) in (302, 303)
        status, _, body = client.request("/status")
        assert status == 200 and 'id="destruction-last">never<' in body.decode()
        assert client.request(f"/audio/{quote(old.entry.object_key)}")[0] == 200
        assert run(capsys, "retention", "run", "--config", str(path), "--yes")[0] == 0
        status, _, body = client.request(f"/audio/{quote(old.entry.object_key)}")
        assert status == 410 and b"destroyed" in body
        assert client.request(f"/audio/{quote(young.entry.object_key)}")[0] == 200
        assert client.request("/audio/recordings/pbx/never-was.mp3")[0] == 404
        status, _, body = client.request("/api/recordings?limit=50")
        keys = {item["key"] for item in json.loads(body)["items"]} if status == 200 else set()
        assert status == 200 and old.entry.object_key not in keys
        assert young.entry.object_key in keys
        status, _, body = client.request("/status")
        page = body.decode()
        assert status == 200
        assert "1 destroyed, 0 kept, 0 failed (ok)" in page
        assert 'id="destruction-total">1<' in page
        last = state.destructions.last_run()
        assert last is not None
        next_run = last.started_at.astimezone(ZoneInfo("Europe/Istanbul")) + timedelta(days=7)
        assert f'id="destruction-next">{next_run:%Y-%m-%d %H:%M}<' in page
