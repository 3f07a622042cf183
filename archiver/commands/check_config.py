"""`archiver check-config`: validate the configuration (every problem, then warnings)."""

from __future__ import annotations

import argparse
import sys
from typing import Any

import structlog

from archiver.commands._shared import security_warnings
from archiver.config import (
    config_path,
    load_config,
    retention_warnings,
)
from archiver.exits import EXIT_OK

__all__ = ["add_parser"]

log = structlog.get_logger("archiver")


def add_parser(sub: Any, common: argparse.ArgumentParser) -> None:
    check = sub.add_parser("check-config", parents=[common], help="validate the configuration")
    check.set_defaults(handler=_cmd_check_config)


def _cmd_check_config(args: argparse.Namespace) -> int:
    from archiver.credentials import pbx_password
    from archiver.logs import register_secret
    from archiver.pipeline import find_ffmpeg

    path = config_path(args.config)
    cfg = load_config(path)
    for pbx in cfg.pbx:
        register_secret(pbx_password(pbx))
    for warning in [*security_warnings(path, cfg), *retention_warnings(cfg)]:
        print(f"warning: {warning}", file=sys.stderr)
    find_ffmpeg(cfg.transcode.ffmpeg)
    print(f"{path}: OK ({len(cfg.pbx)} PBX, bucket {cfg.s3.bucket!r})")
    return EXIT_OK
