"""The lifecycle's configuration: [[retention]] rules, [destruction] and the [s3] Object Lock
keys, as `check-config` judges them (refusals with their line, the "kept forever" warning)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from archiver.config import ConfigError, parse_config, retention_warnings

MINIMAL: dict[str, Any] = {
    "pbx": {"name": "ankara", "url": "https://pbx.example:9999", "username": "u",
            "password": "hunter2secret"},
    "s3": {"bucket": "recordings"},
}  # fmt: skip
CATCH_ALL = {"keep_days": 365}


def _cfg(**tables: Any) -> Any:
    return parse_config({**MINIMAL, **tables}, "x.toml")


def test_rules_parse_and_first_match_order_is_kept() -> None:
    cfg = _cfg(
        retention=[
            {"name": "desk", "numbers": ["+90 312 332 04 04"], "keep_days": 2555, "min_days": 1825},
            {"direction": "internal", "keep_days": 30},
            CATCH_ALL,
        ],
        destruction={"every_days": 7, "max_per_run": 50},
    )
    assert [rule.label(n) for n, rule in enumerate(cfg.retention)] == [
        "desk", "retention[1]", "retention[2]"
    ]  # fmt: skip
    assert cfg.retention[2].is_catch_all and not cfg.retention[0].is_catch_all
    assert cfg.destruction.every_days == 7 and cfg.destruction.log_keep_days == 1095
    assert retention_warnings(cfg) == []


@pytest.mark.parametrize(
    ("tables", "message"),
    [
        ({"retention": [{"keep_days": 0}]}, "must be at least 1"),
        ({"retention": [{"keep_days": 10, "min_days": 11}]}, "min_days 11 is more than keep_days"),
        ({"retention": [{"keep_days": 10, "color": "red"}]}, "unknown key 'color'"),
        ({"retention": [{"trunk": "t1", "keep_days": 10}]}, "need a catch-all"),
        ({"retention": [CATCH_ALL, {"trunk": "t1", "keep_days": 1}]}, "never apply"),
        ({"retention": [{"pbx": "izmir", "keep_days": 1}, CATCH_ALL]}, "not a configured pbx"),
        ({"retention": [{"direction": "sideways", "keep_days": 1}, CATCH_ALL]}, "must be one of"),
        (
            {"retention": [{"numbers": ["0312abc"], "keep_days": 1}, CATCH_ALL]},
            "numbers are digits",
        ),
        ({"destruction": {"every_days": 181}}, "at most 180"),
        ({"destruction": {"log_keep_days": 365}}, "at least 1095"),
        ({"s3": {"bucket": "recordings", "retain_mode": "FOREVER"}}, "must be one of"),
        ({"s3": {"bucket": "recordings", "retain_days": 0}}, "must be at least 1"),
    ],
)
def test_check_config_refuses(tables: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigError) as raised:
        _cfg(**tables)
    assert message in str(raised.value)


def test_no_rule_warns_that_recordings_are_kept_forever() -> None:
    (warning,) = retention_warnings(_cfg())
    assert "kept forever" in warning


def test_a_rule_shorter_than_the_store_lock_is_named() -> None:
    cfg = _cfg(retention=[CATCH_ALL], s3={"bucket": "recordings", "retain_days": 1825})
    (warning,) = retention_warnings(cfg)
    assert "retention[0]" in warning and "retain_days 1825" in warning


def _check_config(tmp_path: Path, toml: str) -> subprocess.CompletedProcess[str]:
    path = tmp_path / "archiver.toml"
    path.write_text(toml, encoding="utf-8")
    path.chmod(0o600)
    env = {**os.environ, "ARCHIVER_CONFIG": str(path)}
    return subprocess.run(
        [sys.executable, "-m", "archiver", "check-config"],
        env=env, capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip


_BASE = """\
[pbx]
url = "http://127.0.0.1:9999"
username = "u"
password = "hunter2secret"

[s3]
bucket = "recordings"
"""


def test_check_config_names_the_line_of_a_bad_rule(tmp_path: Path) -> None:
    result = _check_config(tmp_path, _BASE + "\n[[retention]]\nkeep_days = 0\n")
    assert result.returncode == 1
    assert "archiver.toml:10: at 'retention[0].keep_days': must be at least 1" in result.stderr


def test_check_config_warns_without_rules_and_passes(tmp_path: Path) -> None:
    result = _check_config(tmp_path, _BASE)
    assert result.returncode == 0, result.stderr
    assert "recordings are kept forever" in result.stderr
    ruled = _check_config(tmp_path, _BASE + "\n[[retention]]\nkeep_days = 730\n")
    assert ruled.returncode == 0 and "kept forever" not in ruled.stderr
