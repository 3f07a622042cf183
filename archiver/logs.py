"""Logging: structlog, JSON lines for journald, readable lines on a terminal, secrets redacted.

Passwords travel in PBX query strings, so every secret the process learns is registered here and
scrubbed from every event, whatever field it hides in, as a last line of defence: the code is
written so that no URL with credentials is ever logged in the first place.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import MutableMapping
from typing import Any, TextIO

import structlog

__all__ = ["REDACTED", "configure_logging", "redact", "register_secret"]

REDACTED = "[REDACTED]"
_secrets: set[str] = set()


def register_secret(secret: str) -> None:
    """Scrub `secret` from every log event from now on (empty strings are ignored)."""
    if secret:
        _secrets.add(secret)


def redact(text: str) -> str:
    """Return `text` with every registered secret replaced by [REDACTED]."""
    for secret in _secrets:
        if secret in text:
            text = text.replace(secret, REDACTED)
    return text


def _scrub(value: Any) -> Any:
    if isinstance(value, str):
        return redact(value)
    if isinstance(value, dict):
        return {key: _scrub(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return type(value)(_scrub(item) for item in value)
    if isinstance(value, int | float | bool) or value is None:
        return value
    return redact(str(value))


def _redact_processor(
    logger: object, method: str, event: MutableMapping[str, Any]
) -> MutableMapping[str, Any]:
    return {key: _scrub(value) for key, value in event.items()}


class _RedactingFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        record.msg = redact(record.getMessage())
        record.args = None
        return True


def configure_logging(*, level: str = "info", stream: TextIO | None = None) -> None:
    """Set up structlog: JSON on a non-terminal `stream` (journald), console lines on a terminal."""
    out = stream or sys.stdout
    renderer: structlog.types.Processor = (
        structlog.dev.ConsoleRenderer(colors=False)
        if out.isatty()
        else structlog.processors.JSONRenderer(sort_keys=False)
    )
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            structlog.processors.format_exc_info,
            _redact_processor,
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(logging.getLevelName(level.upper())),
        logger_factory=structlog.PrintLoggerFactory(out),
        cache_logger_on_first_use=False,
    )
    # Libraries (botocore, aiohttp) log through the standard library: same stream, same scrub.
    handler = logging.StreamHandler(out)
    handler.addFilter(_RedactingFilter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(logging.WARNING)
