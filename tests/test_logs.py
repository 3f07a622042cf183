"""Log rendering: JSON lines for journald when not on a terminal, readable lines on a terminal
(a real pseudo-terminal here), secrets scrubbed in both."""

from __future__ import annotations

import io
import json
import logging
import os
from collections.abc import Iterator
from urllib.parse import quote, quote_plus

import pytest
import structlog

from archiver.logs import REDACTED, configure_logging, redact, register_secret


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


@pytest.fixture
def _fresh_secrets(monkeypatch: pytest.MonkeyPatch) -> None:
    """Secrets registered by this test only (the registry is process-wide)."""
    import archiver.logs as logs

    monkeypatch.setattr(logs, "_forms", set(), raising=False)
    monkeypatch.setattr(logs, "_pattern", None, raising=False)
    monkeypatch.setattr(logs, "_secrets", set(), raising=False)  # main's registry before #12


@pytest.mark.usefixtures("_fresh_secrets")
def test_short_secrets_do_not_mangle_timestamps_events_or_keys() -> None:
    """Passwords `2026` and `p` (numeric PBX passwords are common) leave the rest readable."""
    out = io.StringIO()
    configure_logging(stream=out)
    register_secret("2026")
    register_secret("p")
    key = "recordings/pbx/2026/11/28/20261128-110332_100_200_1764321812.7.mp3"
    structlog.get_logger("t").info(
        "poll_done", key=key, pbx="pbx", reason="listing: PBX 'pbx' answered 503 on 2026-11-28"
    )
    event = json.loads(out.getvalue())
    assert event["event"] == "poll_done" and event["key"] == key and event["pbx"] == "pbx"
    assert event["reason"] == "listing: PBX 'pbx' answered 503 on 2026-11-28"
    assert event["level"] == "info" and "[REDACTED]" not in event["timestamp"]


@pytest.mark.usefixtures("_fresh_secrets")
def test_secrets_go_where_they_can_appear() -> None:
    """URLs, query strings, headers and a secret standing as a word, whatever the field."""
    register_secret("2026")
    assert redact("GET /cgi-bin/x.cgi?username=a&password=2026&cmd=ls") == (
        f"GET /cgi-bin/x.cgi?username=a&password={REDACTED}&cmd=ls"
    )
    # A secret-named parameter is scrubbed whatever its value, registered or not.
    assert redact("?token=abc&x=1") == f"?token={REDACTED}&x=1"
    assert redact("https://admin:hunter2@pbx:9999/") == f"https://{REDACTED}@pbx:9999/"
    assert redact("{'Authorization': 'Basic YWRtaW46'}") == f"{{'Authorization': '{REDACTED}'}}"
    assert redact("the password is 2026.") == f"the password is {REDACTED}."
    assert redact("20261128-110332") == "20261128-110332"


@pytest.mark.usefixtures("_fresh_secrets")
def test_every_encoded_form_of_a_secret_is_scrubbed() -> None:
    """Issue 11 item 6: a URL-encoded password was not scrubbed."""
    secret = "Pbx+Scan/Secret 9&x=1%"
    register_secret(secret)
    for form in (secret, quote(secret, safe=""), quote_plus(secret), "Pbx%2BScan/Secret%209"):
        text = redact(f"sent {form} to the PBX")
        if form.startswith("Pbx%2BScan/"):  # a prefix of yarl's form is not the secret
            continue
        assert form not in text and REDACTED in text, form


@pytest.mark.usefixtures("_fresh_secrets")
def test_tracebacks_are_scrubbed_in_library_and_structlog_records() -> None:
    """Issue 11 item 6: aiohttp's parse-error log printed the token in its traceback."""
    out = io.StringIO()
    configure_logging(stream=out)
    token = "0123456789abcdef0123456789abcdef"
    register_secret(token)
    try:
        raise ValueError(f"bad request line b'GET /pbx/call-result/{token}?sonuc=\\x01'")
    except ValueError:
        logging.getLogger("aiohttp.server").exception("Error handling request from %s", "::1")
        structlog.get_logger("t").exception("failed")
    text = out.getvalue()
    assert token not in text and quote(token) not in text
    assert text.count(REDACTED) == 2 and "Traceback" in text
