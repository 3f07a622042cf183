"""Log rendering: JSON lines for journald when not on a terminal, readable lines on a terminal
(a real pseudo-terminal here), secrets scrubbed in both."""

from __future__ import annotations

import io
import json
import logging
import os
from collections.abc import Iterator

import pytest
import structlog

from archiver.logs import REDACTED, configure_logging, register_secret


@pytest.fixture(autouse=True)
def _restore_logging() -> Iterator[None]:
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    yield
    structlog.reset_defaults()
    root.handlers[:] = handlers
    root.setLevel(level)


def test_json_lines_when_not_a_terminal() -> None:
    out = io.StringIO()
    configure_logging(stream=out)
    register_secret("Log-Secret-0042")
    structlog.get_logger("t").info("archived", pbx="pbx", uniqueid="1479456211.1297",
                                   reason="x Log-Secret-0042 y")  # fmt: skip
    event = json.loads(out.getvalue())
    assert event["event"] == "archived" and event["pbx"] == "pbx"
    assert event["uniqueid"] == "1479456211.1297" and event["level"] == "info"
    assert event["reason"] == f"x {REDACTED} y" and "timestamp" in event


def test_readable_lines_on_a_terminal() -> None:
    master, replica = os.openpty()
    try:
        with os.fdopen(replica, "w", closefd=False) as tty:
            assert tty.isatty()
            configure_logging(stream=tty)
            register_secret("Log-Secret-0043")
            structlog.get_logger("t").warning("failed", pbx="pbx", reason="Log-Secret-0043")
            tty.flush()
        text = os.read(master, 65536).decode()
    finally:
        os.close(master)
        os.close(replica)
    assert not text.lstrip().startswith("{")
    assert "failed" in text and "pbx=pbx" in text and "warning" in text
    assert "Log-Secret-0043" not in text and REDACTED in text
