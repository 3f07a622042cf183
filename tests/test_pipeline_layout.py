"""The pipeline stays split along its seams (issue 22): no module of archiver/pipeline over 400
lines, and the stop signal is passed, never kept on the Archiver."""

from __future__ import annotations

from pathlib import Path

PIPELINE = Path(__file__).parents[1] / "archiver" / "pipeline"


def test_no_pipeline_module_is_over_400_lines() -> None:
    sizes = {
        str(p.relative_to(PIPELINE)): len(p.read_text().splitlines())
        for p in PIPELINE.rglob("*.py")
    }
    assert sizes and max(sizes.values()) <= 400, {k: v for k, v in sizes.items() if v > 400}


def test_the_stop_is_passed_not_hidden_and_outcomes_are_no_strings() -> None:
    daemon = (PIPELINE / "daemon.py").read_text() + (PIPELINE / "recording.py").read_text()
    assert "self._stop " not in daemon and "self._stop:" not in daemon
    assert "setattr(" not in daemon
