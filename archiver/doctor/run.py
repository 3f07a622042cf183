"""Every check of `archiver doctor`, in order, for one configuration file."""

from __future__ import annotations

import asyncio
from datetime import datetime
from pathlib import Path

from archiver.config import ConfigError, load_config
from archiver.credentials import pbx_password
from archiver.doctor.audio import check_ffmpeg
from archiver.doctor.local import check_callbacks, check_state, check_work_dir
from archiver.doctor.pbx import check_pbx
from archiver.doctor.result import Check, failed, passed
from archiver.doctor.s3 import check_s3
from archiver.logs import register_secret

__all__ = ["run_doctor"]


async def run_doctor(path: Path, *, create_bucket: bool = False) -> list[Check]:
    """Run every check for the configuration at `path`; return them in order. A configuration
    that does not load is the only check then (the others need it)."""
    try:
        cfg = load_config(path)
    except ConfigError as error:
        return [
            failed(
                "configuration",
                f"{path}: {len(error.problems)} problem(s)",
                "fix each line above, then run doctor again",
                error.problems,
            )
        ]
    checks = [
        passed("configuration", f"{path}: valid ({len(cfg.pbx)} PBX, bucket {cfg.s3.bucket!r})")
    ]
    checks.append(await asyncio.to_thread(check_ffmpeg, cfg.transcode))
    now = datetime.now().astimezone()
    for pbx in cfg.pbx:
        try:
            password = pbx_password(pbx)
        except ConfigError as error:
            checks.append(
                failed(
                    f"pbx {pbx.name}: password",
                    "; ".join(error.problems),
                    "make the password source readable",
                )
            )
            continue
        register_secret(password)
        checks += await check_pbx(pbx, password, now)
    checks += await asyncio.to_thread(check_s3, cfg.s3, create_bucket=create_bucket)
    checks.append(check_state(cfg))
    checks.append(check_work_dir(cfg))
    checks.append(await asyncio.to_thread(check_callbacks, cfg))
    return checks
