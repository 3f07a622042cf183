"""Helpers for tests that run `archiver` as an administrator would: a TOML file and a process."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import Any

from aiohttp import web

from archiver.config import Config, S3Config, parse_config
from archiver.lab.seaweed import SeaweedS3
from archiver.lab.simulator import SimulatorOptions, start_simulator
from archiver.pbx.client import PbxClient
from archiver.pipeline import Archiver, PollReport, install_retry_log
from archiver.pipeline.transcode import find_ffmpeg
from archiver.s3.store import S3Store
from archiver.state.api import State
from archiver.state.ledger import Ledger


def state_config(state: dict[str, object]) -> Config:
    """A minimal valid config with the given `[state]` table."""
    return parse_config(
        {
            "pbx": {"url": "http://127.0.0.1:1", "username": "u", "password": "p"},
            "s3": {"bucket": "unused"},
            "state": state,
        },
        "test",
    )


def daemon_toml(
    pbx_url: str, seaweed: SeaweedS3, bucket: str, state: Path, **tables: dict[str, object]
) -> str:
    """A config for the simulator at `pbx_url` and the test's bucket; password from
    $TEST_PBX_PASSWORD; fast polls and retries. Each keyword is a table whose keys are merged
    over (or added to) the defaults, e.g. `poll={"lookback_days": 0}`."""
    config: dict[str, dict[str, object]] = {
        "pbx": {"url": pbx_url, "username": "admin", "password_env": "TEST_PBX_PASSWORD"},
        "poll": {"settle_s": 0, "lookback_days": 1, "interval_s": 1},
        "s3": {
            "bucket": bucket,
            "endpoint_url": seaweed.endpoint_url,
            "region": "us-east-1",
            "addressing_style": "path",
        },
        "state": {"path": str(state / "ledger.sqlite3")},
        "retry": {"attempts": 3, "wait_initial_s": 0, "wait_max_s": 0},
    }
    for name, values in tables.items():
        config.setdefault(name, {}).update(values)
    return "".join(
        f"[{name}]\n"
        + "".join(f"{key} = {_toml_value(value)}\n" for key, value in values.items())
        + "\n"
        for name, values in config.items()
    )


def _toml_value(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    return json.dumps(str(value))  # a JSON string is a valid TOML basic string


def run_archiver(
    *args: str, env: dict[str, str], timeout_s: float = 120
) -> subprocess.CompletedProcess[str]:
    """Run `python -m archiver ARGS` to completion, capturing its output."""
    started = time.monotonic()
    result = subprocess.run(
        [sys.executable, "-m", "archiver", *args],
        env=env, capture_output=True, text=True, timeout=timeout_s, check=False,
    )  # fmt: skip
    print(f"archiver {args[0]}: {time.monotonic() - started:.1f} s")
    return result


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
    return port


def http_get(url: str, *, timeout_s: float = 5) -> tuple[int, str]:
    """GET `url`; return (status, body text), for error statuses too."""
    try:
        # Only ever the test daemon on 127.0.0.1.
        with urllib.request.urlopen(url, timeout=timeout_s) as response:  # noqa: S310
            return response.status, response.read().decode("utf-8")
    except urllib.error.HTTPError as error:
        return error.code, error.read().decode("utf-8")


def wait_for(url: str, *, status: int = 200, timeout_s: float = 30) -> str:
    """Poll `url` until it answers `status`; return the body. Fail after `timeout_s`."""
    deadline = time.monotonic() + timeout_s
    last: object = None
    while time.monotonic() < deadline:
        try:
            code, body = http_get(url)
        except OSError as error:
            last = error
        else:
            if code == status:
                return body
            last = (code, body)
        time.sleep(0.2)
    raise AssertionError(f"{url} never answered {status}; last: {last!r}")


def json_events(text: str) -> list[dict[str, Any]]:
    """The JSON log events among `text`'s lines."""
    return [json.loads(line) for line in text.splitlines() if line.startswith("{")]


def metric_value(body: str, name: str, **labels: str) -> float:
    """The value of sample `name{labels}` in a Prometheus text body. Fail if absent."""
    from prometheus_client.parser import text_string_to_metric_families

    for family in text_string_to_metric_families(body):
        for sample in family.samples:
            if sample.name == name and all(sample.labels.get(k) == v for k, v in labels.items()):
                return float(sample.value)
    raise AssertionError(f"no sample {name}{labels}")


@dataclass
class Rig:
    """An in-process archiver (real HTTP, ffmpeg, SQLite) against a running simulator and the
    session's SeaweedFS."""

    cfg: Config
    options: SimulatorOptions
    runner: web.AppRunner
    s3: SeaweedS3
    tmp: Path

    def archiver(self, state: State | None = None, **kwargs: Any) -> Archiver:
        """An Archiver on its own SQLite ledger, or on `state` (its PBX client then keeps to
        the request slots shared through it)."""
        pbx = self.cfg.pbx[0]
        client = PbxClient(pbx, self.options.password)
        if state is not None:
            client.shared_gate = state.pbx_gate(pbx.name, pbx.max_concurrent_requests)
        install_retry_log()  # as open_archiver does for the commands
        return Archiver(
            cfg=self.cfg,
            ledger=Ledger.open(self.cfg.state.path) if state is None else state.ledger,
            store=S3Store(self.cfg.s3),
            clients={pbx.name: client},
            ffmpeg=find_ffmpeg(None),
            **kwargs,
        )

    async def archive(
        self, days: Sequence[date], *, polls: int = 1, **kwargs: Any
    ) -> list[PollReport]:
        """Archive `days` `polls` times with one Archiver: one life of the process."""
        archiver = self.archiver(**kwargs)
        try:
            return [await archiver.archive_days({"pbx": days}) for _ in range(polls)]
        finally:
            for client in archiver.clients.values():
                await client.close()
            archiver.close()
            archiver.ledger.close()

    def objects(self) -> dict[str, dict[str, Any]]:
        """Every object in the bucket, by key, with its HEAD answer."""
        client = self.s3.client()
        found: dict[str, dict[str, Any]] = {}
        for page in client.get_paginator("list_objects_v2").paginate(Bucket=self.cfg.s3.bucket):
            for item in page.get("Contents", []):
                head = client.head_object(Bucket=self.cfg.s3.bucket, Key=item["Key"])
                found[item["Key"]] = dict(head)
        return found


async def start_rig(
    options: SimulatorOptions,
    s3_config: S3Config,
    seaweed: SeaweedS3,
    tmp: Path,
    tables: Mapping[str, Mapping[str, object]] | None = None,
) -> Rig:
    """Start the simulator and validate a config for it (fast retries, settle 0); `tables`
    are merged over the defaults. The caller cleans up `rig.runner`."""
    runner, port = await start_simulator(options)
    document: dict[str, dict[str, object]] = {
        "pbx": {"url": f"http://127.0.0.1:{port}", "username": "admin",
                "password": options.password},
        "s3": s3_config.model_dump(exclude_none=True),
        "poll": {"settle_s": 0},
        "transcode": {"workers": 2},
        "state": {"path": str(tmp / "state" / "ledger.sqlite3")},
        # Waits switched off through the configuration: the retries themselves still run.
        "retry": {"attempts": 3, "wait_initial_s": 0, "wait_max_s": 0},
    }  # fmt: skip
    for section, values in (tables or {}).items():
        document[section] = {**document.get(section, {}), **values}
    cfg = parse_config(document, "test")
    return Rig(cfg=cfg, options=options, runner=runner, s3=seaweed, tmp=tmp)
