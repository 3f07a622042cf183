"""Helpers for the lifecycle tests: an archive made of real objects (SeaweedFS or moto) and real
state rows (SQLite or PostgreSQL), as the pipeline leaves them, and a TOML file for the
commands."""

from __future__ import annotations

import base64
import hashlib
import json
import os
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from archiver.config import Config, S3Config, parse_config
from archiver.names import Recording, parse_name
from archiver.retention import upload_lock
from archiver.s3 import S3Store, object_metadata
from archiver.state import CatalogueEntry, State, catalogue_entry

IST = ZoneInfo("Europe/Istanbul")
TRUNK = "trunk-sip-908502591905"


@dataclass(frozen=True)
class Archived:
    entry: CatalogueEntry
    rec: Recording
    data: bytes


def recording(days_ago: float, n: int, caller: str = "100", callee: str = "903123320404",
              trunk: str = TRUNK, pbx: str = "pbx") -> Recording:  # fmt: skip
    """A recording that started `days_ago` days ago (Istanbul time), unique by `n`."""
    started = (datetime.now(UTC) - timedelta(days=days_ago)).astimezone(IST)
    epoch = int(started.timestamp())
    name = f"{started:%Y%m%d-%H%M%S}-{caller}-{callee}-{epoch}.{n}-25.gsm"
    return parse_name(pbx, trunk, name, IST)


def archive(state: State, cfg: Config, rec: Recording) -> Archived:
    """Upload an MP3 for `rec` (with the lock an upload gets) and record it verified, as the
    pipeline does."""
    store = S3Store(cfg.s3)
    data = b"ID3" + os.urandom(700)
    digest = hashlib.md5(data, usedforsecurity=False)
    md5_b64 = base64.b64encode(digest.digest()).decode()
    source = hashlib.sha256(rec.key.encode()).hexdigest()
    key = f"{cfg.s3.prefix}/{rec.pbx}/{rec.name.rsplit('.', 1)[0]}.mp3"
    path = Path(f"/tmp/archiver-test-{os.getpid()}-{rec.uniqueid}.mp3")
    path.write_bytes(data)
    try:
        store.put_verified(
            path,
            key,
            object_metadata(rec, source_sha256=source, md5_b64=md5_b64),
            md5_b64=md5_b64,
            md5_hex=digest.hexdigest(),
            lock=upload_lock(cfg.s3, rec, key, state.holds),
        )
    finally:
        path.unlink()
    state.ledger.discover([rec])
    state.ledger.advance(rec.key, "transcoded", source_sha256=source)
    entry = catalogue_entry(rec, object_key=key, size_bytes=len(data))
    assert state.ledger.mark_verified(entry)
    return Archived(entry, rec, data)


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, list):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    return json.dumps(str(value))


def write_config(path: Path, document: dict[str, Any]) -> Path:
    """`document` as TOML at `path` (tables of plain values; lists of tables as [[name]])."""
    lines: list[str] = []
    for name, value in document.items():
        tables = value if isinstance(value, list) else [value]
        for table in tables:
            lines.append(f"[[{name}]]" if isinstance(value, list) else f"[{name}]")
            lines += [f"{key} = {_toml_value(v)}" for key, v in table.items() if v is not None]
            lines.append("")
    path.write_text("\n".join(lines), encoding="utf-8")
    path.chmod(0o600)
    return path


def lifecycle_config(
    state_cfg: Config,
    s3: S3Config,
    tmp: Path,
    *,
    retention: list[dict[str, Any]] | None = None,
    destruction: dict[str, Any] | None = None,
    s3_extra: dict[str, Any] | None = None,
    web: dict[str, Any] | None = None,
) -> tuple[Config, Path]:
    """A configuration with `state_cfg`'s state and the store `s3`, its rules, written to a
    file; returns both."""
    state: dict[str, Any] = {
        key: str(value) if isinstance(value, Path) else value
        for key, value in state_cfg.state.model_dump(exclude_none=True).items()
        if key in ("path", "url", "outage_s")
    }
    document: dict[str, Any] = {
        "pbx": {"url": "http://127.0.0.1:1", "username": "u", "password": "p",
                "timezone": "Europe/Istanbul"},
        "s3": {**s3.model_dump(exclude_none=True, include={"bucket", "endpoint_url", "region",
                                                           "addressing_style", "object_lock",
                                                           "retain_days", "retain_mode"}),
               **(s3_extra or {})},
        "state": state,
        "destruction": destruction or {},
        "retention": retention if retention is not None else [{"keep_days": 365}],
    }  # fmt: skip
    if not document["retention"]:
        del document["retention"]
    if web is not None:
        document["web"] = web
    path = write_config(tmp / "archiver.toml", document)
    return parse_config(_reload(path), str(path)), path


def _reload(path: Path) -> dict[str, Any]:
    import tomllib

    return tomllib.loads(path.read_text("utf-8"))
