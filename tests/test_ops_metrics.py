"""The metrics the alerts and the dashboard need (issue 23): each one moves with the state it
reports, and stays put while that state lasts."""

from __future__ import annotations

import time
from pathlib import Path

from prometheus_client.parser import text_string_to_metric_families

from archiver.service import DaemonFacts, Metrics
from archiver.state import StateUnavailable


def _values(metrics: Metrics) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    found = {}
    for family in text_string_to_metric_families(metrics.render().decode()):
        for sample in family.samples:
            found[sample.name, tuple(sorted(sample.labels.items()))] = sample.value
    return found


def _value(metrics: Metrics, name: str, **labels: str) -> float:
    return _values(metrics)[name, tuple(sorted(labels.items()))]


def _facts(work_dir: Path, counts: list[tuple[int, int] | Exception]) -> DaemonFacts:
    def failed_counts() -> tuple[int, int]:
        answer = counts[0]
        if isinstance(answer, Exception):
            raise answer
        return answer

    return DaemonFacts(
        poll_interval_s=30.0, work_dir=work_dir, in_flight=3, failed_counts=failed_counts
    )


def test_daemon_gauges_exist_only_once_the_daemon_says_so(tmp_path: Path) -> None:
    """A 0 before `archiver run` knows anything would fire S3 and state alerts."""
    metrics = Metrics(["ankara"])
    names = {name for name, _ in _values(metrics)}
    assert {
        "archiver_s3_up",
        "archiver_state_up",
        "archiver_poll_interval_seconds",
    } & names == set()
    metrics.watch_daemon(_facts(tmp_path, [(0, 0)]))
    assert _value(metrics, "archiver_s3_up") == 1
    assert _value(metrics, "archiver_state_up") == 1
    assert _value(metrics, "archiver_poll_interval_seconds") == 30


def test_listing_age_grows_until_a_listing_succeeds_and_suspect_lasts(tmp_path: Path) -> None:
    metrics = Metrics(["ankara"])
    time.sleep(0.05)
    first = _value(metrics, "archiver_listing_age_seconds", pbx="ankara")
    assert first >= 0.05  # since the start: nothing succeeded yet
    metrics.listed("ankara", ok=False, discovered=0, due=0)
    metrics.listing_broken("ankara", "the PBX listed no recording folder")
    time.sleep(0.05)
    assert _value(metrics, "archiver_listing_age_seconds", pbx="ankara") > first
    assert _value(metrics, "archiver_listing_suspect", pbx="ankara") == 1
    assert _value(metrics, "archiver_listing_suspect", pbx="ankara") == 1  # a state, not an event
    metrics.listed("ankara", ok=True, discovered=1, due=1)
    assert _value(metrics, "archiver_listing_age_seconds", pbx="ankara") < 0.05
    assert _value(metrics, "archiver_listing_suspect", pbx="ankara") == 0


def test_s3_up_follows_the_s3_stages_only(tmp_path: Path) -> None:
    metrics = Metrics(["ankara"])
    metrics.watch_daemon(_facts(tmp_path, [(0, 0)]))
    metrics.retrying("download", "ankara", "timeout")
    assert _value(metrics, "archiver_s3_up") == 1
    metrics.retrying("upload", "ankara", "connect")
    assert _value(metrics, "archiver_s3_up") == 0
    metrics.stage_done("upload", "ankara", 3.0, ok=False)
    assert _value(metrics, "archiver_s3_up") == 0
    metrics.stage_done("transcode", "ankara", 1.0, ok=True)
    assert _value(metrics, "archiver_s3_up") == 0
    metrics.stage_done("upload", "ankara", 0.2, ok=True)
    assert _value(metrics, "archiver_s3_up") == 1


async def test_state_counts_and_state_up_come_from_the_state(tmp_path: Path) -> None:
    counts: list[tuple[int, int] | Exception] = [(4, 2)]
    metrics = Metrics(["ankara"])
    metrics.watch_daemon(_facts(tmp_path, counts))
    await metrics.refresh()
    assert _value(metrics, "archiver_failed_recordings", state="for_good") == 2
    assert _value(metrics, "archiver_failed_recordings", state="retryable") == 4
    counts[0] = (4, 3)
    await metrics.refresh()  # asked at most every 30 s: the old counts stand
    assert _value(metrics, "archiver_failed_recordings", state="for_good") == 2
    metrics.failed("ankara", "bad_audio", for_good=True)  # ...unless a recording failed
    await metrics.refresh()
    assert _value(metrics, "archiver_failed_recordings", state="for_good") == 3
    assert _value(metrics, "archiver_failures_total", pbx="ankara", reason="bad_audio") == 1
    assert _value(metrics, "archiver_failures_total", pbx="ankara", reason="timeout") == 0
    counts[0] = StateUnavailable("connection refused")
    metrics.finished("ankara", "deferred")
    assert _value(metrics, "archiver_state_up") == 0
    await metrics.refresh()
    assert _value(metrics, "archiver_state_up") == 0  # and it says so while it lasts
    await metrics.refresh()
    assert _value(metrics, "archiver_state_up") == 0
    counts[0] = (0, 0)
    await metrics.refresh()
    assert _value(metrics, "archiver_state_up") == 1
    assert _value(metrics, "archiver_failed_recordings", state="for_good") == 0


def test_work_dir_room_against_the_largest_recording(tmp_path: Path) -> None:
    metrics = Metrics(["ankara"])
    metrics.watch_daemon(_facts(tmp_path, [(0, 0)]))
    free = _value(metrics, "archiver_work_dir_free_bytes")
    assert free > 0
    hour_of_pcm = 3600 * 16_000
    assert _value(metrics, "archiver_work_dir_needed_bytes") == int(3 * hour_of_pcm * 1.25)
    metrics.downloaded("ankara", 2_000_000)
    assert _value(metrics, "archiver_work_dir_needed_bytes") == int(3 * 2_000_000 * 1.25)
    tmp_path.rmdir()  # the folder vanished: no room at all
    assert _value(metrics, "archiver_work_dir_free_bytes") == 0
