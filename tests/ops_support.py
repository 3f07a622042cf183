"""What the ops files (alert rules, dashboard) are checked against: the metrics a real
`archiver run` exports, with every optional part switched on."""

from __future__ import annotations

import asyncio
import re
from pathlib import Path

from prometheus_client.parser import text_string_to_metric_families

from archiver.calls.callbacks import CallbackStats
from archiver.service import DaemonFacts, Metrics

ROOT = Path(__file__).resolve().parent.parent
OPS = ROOT / "ops"
# A metric name in PromQL or a series selector (Prometheus's own `up` is added where it is used).
METRIC_NAME = re.compile(r"\barchiver_[a-z0-9_]+")


def exported(work_dir: Path) -> dict[str, set[str]]:
    """Every sample name `archiver run`'s /metrics can carry, with its label names: the daemon's
    metrics with its facts, request limits and call-result counters all registered."""
    metrics = Metrics(["ankara"])
    metrics.watch_daemon(
        DaemonFacts(poll_interval_s=60.0, work_dir=work_dir, in_flight=4,
                    failed_counts=lambda: (1, 2))
    )  # fmt: skip
    metrics.watch_request_limits(lambda: {"ankara": 8.0})
    calls = CallbackStats()
    calls.events["dial", "ANSWERED"] += 1
    calls.refused[403, "token"] += 1
    calls.flagged["late"] += 1
    metrics.add_counters(calls.samples, "Call results received.")
    # Series that appear with their first event.
    metrics.retrying("upload", "ankara", "timeout")
    metrics.listed("ankara", ok=True, discovered=1, due=1)
    asyncio.run(metrics.refresh())
    names: dict[str, set[str]] = {}
    for family in text_string_to_metric_families(metrics.render().decode()):
        for sample in family.samples:
            names.setdefault(sample.name, set()).update(sample.labels)
    return names
