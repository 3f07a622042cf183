"""The shipped alert rules (ops/prometheus/archiver-rules.yml, issue 23 item 2): promtool accepts
them, their unit tests fire and resolve every alert, and they speak only of metrics that
`archiver run` exports, with the labels it gives them."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest
from ops_support import METRIC_NAME, OPS, exported

RULES = OPS / "prometheus" / "archiver-rules.yml"
UNIT_TESTS = sorted((OPS / "prometheus" / "tests").glob("*.yml"))
# The alerts the issue names (a contract: automated checks use these names).
REQUIRED = (
    "ArchiverNoSuccessfulPoll", "ArchiverPbxCredentialsRefused", "ArchiverListingSuspect",
    "ArchiverBacklogGrowing", "ArchiverFailedForGood", "ArchiverS3Unavailable",
    "ArchiverStateUnavailable", "ArchiverWorkDirLow",
)  # fmt: skip


def _promtool(*args: str) -> subprocess.CompletedProcess[str]:
    promtool = shutil.which("promtool")
    assert promtool is not None, (
        "promtool is missing: scripts/bootstrap installs Debian's prometheus"
    )
    return subprocess.run(
        [promtool, *args], capture_output=True, text=True, timeout=120, check=False
    )


def _alerts() -> list[str]:
    return re.findall(r"^\s*- alert: (\w+)$", RULES.read_text("utf-8"), flags=re.M)


def test_promtool_checks_the_rules() -> None:
    done = _promtool("check", "rules", str(RULES))
    assert done.returncode == 0, done.stdout + done.stderr
    assert f"SUCCESS: {len(_alerts())} rules found" in done.stdout


def test_promtool_unit_tests_fire_and_resolve_every_alert() -> None:
    assert UNIT_TESTS
    done = _promtool("test", "rules", *map(str, UNIT_TESTS))
    print(done.stdout, done.stderr)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "SUCCESS" in done.stdout
    text = "\n".join(path.read_text("utf-8") for path in UNIT_TESTS)
    for alert in _alerts():
        firing = re.findall(rf"alertname: {alert}\n\s+exp_alerts:\n\s+- exp_labels", text)
        quiet = re.findall(rf"alertname: {alert}, exp_alerts: \[\]", text)
        assert firing, f"no unit test shows {alert} firing"
        assert quiet, f"no unit test shows {alert} quiet (pending or resolved)"


def test_a_broken_rule_fails_its_unit_test(tmp_path: Path) -> None:
    """The unit tests can fail: the refusal alert with a `for:` twice as long does not fire
    when its test expects it."""
    rules = RULES.read_text("utf-8")
    changed = re.sub(
        r"(alert: ArchiverPbxCredentialsRefused\n\s+expr: .*\n\s+for: )5m", r"\g<1>10m", rules
    )
    assert changed != rules
    (tmp_path / "archiver-rules.yml").write_text(changed, "utf-8")
    (tmp_path / "tests").mkdir()
    for path in UNIT_TESTS:
        (tmp_path / "tests" / path.name).write_text(path.read_text("utf-8"), "utf-8")
    done = _promtool("test", "rules", *(str(p) for p in (tmp_path / "tests").glob("*.yml")))
    assert done.returncode != 0
    assert "ArchiverPbxCredentialsRefused" in done.stdout + done.stderr


def test_the_required_alerts_are_there_each_with_what_to_do() -> None:
    alerts = _alerts()
    assert set(REQUIRED) <= set(alerts), set(REQUIRED) - set(alerts)
    blocks = re.split(r"\n\s*- alert: ", RULES.read_text("utf-8"))[1:]
    for block in blocks:
        name = block.split("\n", 1)[0]
        assert re.search(r"\n\s+for: \d+m\n", block), f"{name}: no `for:` (it must persist)"
        assert "summary: >-" in block and "description: >-" in block, name
        summary = block.split("summary: >-", 1)[1].split("description:", 1)[0]
        assert re.search(r"`[^`]+`", summary), f"{name}: the summary names no command to run"


@pytest.mark.parametrize("path", [RULES, *UNIT_TESTS], ids=lambda p: p.name)
def test_rules_and_their_tests_name_only_metrics_archiver_exports(
    path: Path, tmp_path: Path
) -> None:
    names = exported(tmp_path)
    text = path.read_text("utf-8")
    unknown = sorted(set(METRIC_NAME.findall(text)) - set(names))
    assert unknown == [], f"{path.name} names metrics archiver does not export: {unknown}"
    # Input series carry archiver's own labels (plus Prometheus's job and instance).
    for name, labels in re.findall(r"series: '(archiver_\w+)\{([^}]*)\}'", text):
        given = set(re.findall(r"(\w+)=", labels)) - {"job", "instance"}
        assert given == names[name], f"{path.name}: {name} with {given}, exported {names[name]}"
