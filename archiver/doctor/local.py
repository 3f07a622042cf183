"""The checks of this host: the state file writable, the work folder on a disk with room for
`max in flight x largest recording`, and (callbacks enabled) the callback URL answering here.
Nothing is created: a path that does not exist yet is judged by its nearest existing folder."""

from __future__ import annotations

import os
import secrets
import shutil
import sqlite3
import urllib.error
import urllib.request
from pathlib import Path
from typing import Final

from archiver.config import Config, ConfigError
from archiver.doctor.result import Check, failed, passed, skipped
from archiver.pipeline import max_in_flight
from archiver.state import StateUnavailable, open_state

__all__ = ["DEFAULT_LARGEST_BYTES", "check_callbacks", "check_state", "check_work_dir"]

# Without a ledger to ask: an hour of 8 kHz 16-bit PCM (the largest format) and its MP3.
DEFAULT_LARGEST_BYTES: Final = 3600 * 16_000
_MP3_SHARE: Final = 0.25  # 32 kbit/s MP3 of 128 kbit/s PCM, rounded up


def _existing_ancestor(path: Path) -> Path:
    for candidate in (path, *path.parents):
        if candidate.exists():
            return candidate
    return Path("/")


def check_state(cfg: Config) -> Check:
    """The SQLite file writable, or the PostgreSQL state reachable (its schema brought up to
    date, as the daemon would at start)."""
    name = "state file"
    if cfg.state.url is not None:
        return _check_postgres(cfg)
    path = cfg.state.path
    if path.exists():
        ok = os.access(path, os.R_OK | os.W_OK) and os.access(path.parent, os.W_OK)
        where = f"{path} exists"
    else:
        folder = _existing_ancestor(path.parent)
        ok = os.access(folder, os.W_OK)
        where = f"{path} will be created (in {folder})"
    if not ok:
        return failed(
            name,
            f"{where} but is not writable by this user",
            "run as the service's user, or fix the ownership (under systemd: "
            "StateDirectory= does it)",
        )
    return passed(name, f"{where}, writable")


def _check_postgres(cfg: Config) -> Check:
    name = "state database"
    try:
        state = open_state(cfg)
    except (StateUnavailable, ConfigError) as error:
        reason = error.reason if isinstance(error, StateUnavailable) else "; ".join(error.problems)
        return failed(name, reason, "check [state] url, its password source and the network")
    try:
        detail = f"{state.where} reachable, schema up to date"
        unverified = cfg.state.unverified_tls()  # as for an http:// PBX: said, not failed
        return passed(name, detail if unverified is None else f"{detail}; warning: {unverified}")
    finally:
        state.close()


def _largest_recording_bytes(cfg: Config) -> tuple[int, str]:
    if cfg.state.url is not None or not cfg.state.path.exists():
        return DEFAULT_LARGEST_BYTES, "an hour of PCM, no ledger file here"
    try:
        connection = sqlite3.connect(f"file:{cfg.state.path}?mode=ro", uri=True)
        try:
            row = connection.execute("SELECT MAX(source_bytes) FROM recordings").fetchone()
        finally:
            connection.close()
    except sqlite3.Error:
        return DEFAULT_LARGEST_BYTES, "an hour of PCM, the ledger is unreadable"
    if row is None or not row[0]:
        return DEFAULT_LARGEST_BYTES, "an hour of PCM, nothing archived yet"
    return max(int(row[0]), 1), "the largest archived so far"


def check_work_dir(cfg: Config) -> Check:
    name = "work directory"
    work = cfg.state.work_path
    folder = _existing_ancestor(work)
    if not os.access(folder, os.W_OK):
        return failed(
            name,
            f"{work} is not writable (nearest existing folder {folder})",
            "fix state.work_dir or its ownership",
        )
    largest, why = _largest_recording_bytes(cfg)
    in_flight = max_in_flight(cfg)
    need = int(in_flight * largest * (1 + _MP3_SHARE))
    free = shutil.disk_usage(folder).free
    detail = (
        f"{work}: {free / 1e9:.1f} GB free, needs {need / 1e9:.2f} GB = {in_flight} in flight "
        f"x {largest / 1e6:.1f} MB ({why}) and its MP3"
    )
    if free < need:
        return failed(
            name,
            detail,
            "free disk space, or point state.work_dir at a larger disk, "
            "or lower transcode.workers / batch_files",
        )
    return passed(name, detail)


def check_callbacks(cfg: Config) -> Check:
    """The receiver answers at `http.listen` (a wrong token, so nothing is stored: 403)."""
    name = "callback URL"
    if not cfg.callbacks.enabled or cfg.http.listen is None:
        return skipped(name, "callbacks are not enabled")
    host, _, port = cfg.http.listen.rpartition(":")
    host = host.strip("[]")
    if host in ("0.0.0.0", "::", ""):  # noqa: S104 - reading the setting, not binding
        host = "127.0.0.1"
    shown = f"http://{host}:{port}{cfg.callbacks.path}/<token>"
    decoy = secrets.token_hex(16)
    url = f"http://{host}:{port}{cfg.callbacks.path}/{decoy}"
    try:
        # A local address from the configuration, never anything the PBX said.
        with urllib.request.urlopen(url, timeout=5) as response:
            status = response.status
    except urllib.error.HTTPError as error:
        status = error.code
    except OSError as error:
        reason = getattr(error, "reason", None) or error
        return failed(
            name,
            f"nothing answers at {shown} ({reason})",
            "start the daemon (systemctl start archiver), then run doctor again",
        )
    if status != 403:
        return failed(
            name,
            f"{shown} answered HTTP {status} to a wrong token (expected 403)",
            "is another program listening on http.listen?",
        )
    return passed(name, f"{shown} answers (403 to a wrong token, as it should)")
