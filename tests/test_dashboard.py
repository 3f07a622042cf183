"""The Grafana dashboard (ops/grafana/archiver.json, issue 23 item 3): the panels the issue asks
for are there, every query names only metrics (and labels) that `archiver run` exports, and
promtool parses every query as PromQL."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
from ops_support import METRIC_NAME, OPS, exported

DASHBOARD = OPS / "grafana" / "archiver.json"
# What the issue asks the dashboard to show, as words its panel titles carry.
REQUIRED_PANELS = (
    "Archived per hour", "Backlog", "Failures by reason", "Retries", "Transcode CPU and audio",
    "PBX request limit", "Bandwidth", "Listing age",
)  # fmt: skip
# Grafana's own variables, as Prometheus would see them once Grafana has filled them in.
_GRAFANA = {"$instance": ".*", "$__rate_interval": "5m", "$__range": "1d"}


def _dashboard() -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads(DASHBOARD.read_text("utf-8"))
    return loaded


def _queries() -> list[tuple[str, str]]:
    """(panel title, query) for every target of every panel."""
    return [
        (panel["title"], target["expr"])
        for panel in _dashboard()["panels"]
        for target in panel.get("targets", [])
    ]


def test_the_panels_the_issue_asks_for_are_there() -> None:
    dashboard = _dashboard()
    assert dashboard["uid"] == "archiver"
    titles = [panel["title"] for panel in dashboard["panels"]]
    missing = [want for want in REQUIRED_PANELS if not any(t.startswith(want) for t in titles)]
    assert missing == []
    assert all(panel.get("targets") for panel in dashboard["panels"])
    assert len(set(titles)) == len(titles)
    ids = [panel["id"] for panel in dashboard["panels"]]
    assert len(set(ids)) == len(ids)


def test_every_query_names_metrics_archiver_exports(tmp_path: Path) -> None:
    names = exported(tmp_path)
    problems = []
    for title, query in _queries():
        used = METRIC_NAME.findall(query)
        if not used:
            problems.append(f"{title}: {query} names no archiver metric")
        problems += [f"{title}: {name} is not exported" for name in used if name not in names]
        for name, matchers in re.findall(r"(archiver_\w+)\{([^}]*)\}", query):
            labels = set(re.findall(r"(\w+)\s*=~?", matchers)) - {"instance", "job"}
            if name in names and not labels <= names[name]:
                problems.append(f"{title}: {name} has no label {labels - names[name]}")
        for grouping in re.findall(r"by \(([^)]*)\)", query):
            wanted = {label.strip() for label in grouping.split(",")} - {"instance", "job"}
            have = set().union(*(names.get(name, set()) for name in used))
            if not wanted <= have:
                problems.append(f"{title}: grouped by {wanted - have}, which no metric has")
    assert problems == []


def test_promtool_parses_every_query(tmp_path: Path) -> None:
    """Each query, with Grafana's variables filled in, as a recording rule promtool checks."""
    promtool = shutil.which("promtool")
    assert promtool is not None, "promtool is missing: scripts/bootstrap installs prometheus"
    rules = ["groups:", "  - name: dashboard", "    rules:"]
    for number, (_, query) in enumerate(_queries()):
        for variable, value in _GRAFANA.items():
            query = query.replace(variable, value)
        assert "$" not in query, query
        rules += [f"      - record: dashboard:query{number}", f"        expr: {json.dumps(query)}"]
    path = tmp_path / "dashboard-rules.yml"
    path.write_text("\n".join(rules) + "\n", "utf-8")
    done = subprocess.run(
        [promtool, "check", "rules", str(path)], capture_output=True, text=True, check=False
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert f"SUCCESS: {len(_queries())} rules found" in done.stdout


@pytest.mark.parametrize("broken", ["sum by (pbx) (rate(archiver_retries_total[5m])", "a b"])
def test_promtool_would_refuse_a_broken_query(tmp_path: Path, broken: str) -> None:
    promtool = shutil.which("promtool")
    assert promtool is not None
    path = tmp_path / "broken.yml"
    rule = f"      - record: d:q\n        expr: {json.dumps(broken)}\n"
    path.write_text(f"groups:\n  - name: d\n    rules:\n{rule}", "utf-8")
    done = subprocess.run(
        [promtool, "check", "rules", str(path)], capture_output=True, text=True, check=False
    )
    assert done.returncode != 0
