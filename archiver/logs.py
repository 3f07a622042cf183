"""Logging: structlog, JSON lines for journald, readable lines on a terminal, secrets redacted.

Secrets are kept out by construction: no URL that carries credentials is ever logged or put into
an exception. The scrubber here is the last line of defence, and it scrubs only where a secret can
really appear, so that a short secret (a PBX password `2026`, or `p`) cannot mangle the rest:

- in free text (`reason`, `error`, a standard-library message, every formatted traceback):
  credentials in URLs (`//user:pass@`), secret-named query parameters (`password=`, `token=`,
  `X-Amz-Signature=`...) and secret headers (`Authorization:`...) whatever their value; and every
  registered secret in every encoded form (raw, percent-encoded, form-encoded) where it stands as
  a word of its own (not inside a run of letters and digits nor joined to one by `-:./`, so
  `2026` in `2026-11-28` or `…/2026/11/…` stays; a secret of 8 characters or more goes wherever
  it appears);
- never in the fields this program builds from validated values (`event`, `timestamp`, `level`,
  `pbx`, `uniqueid`, `key`...): a timestamp, an event name or an S3 key cannot hold a secret.
"""

from __future__ import annotations

import logging
import re
import sys
from collections.abc import MutableMapping
from typing import Any, TextIO
from urllib.parse import quote, quote_plus

import structlog
import yarl

__all__ = ["REDACTED", "configure_logging", "redact", "register_secret", "secret_forms"]

REDACTED = "[REDACTED]"

# Fields filled only from our own vocabulary or from allow-listed, parsed names: left as they are.
_STRUCTURAL_FIELDS = frozenset(
    {
        "event", "timestamp", "level", "logger", "pbx", "uniqueid", "name", "key", "object_key",
        "day", "stage", "tick", "listen", "path", "attempt", "attempts", "next_attempt_in_s",
    }
)  # fmt: skip
# A secret this long is scrubbed wherever it appears; a shorter one only as a word of its own.
_SUBSTRING_MIN_CHARS = 8
_SENSITIVE_PARAMS = (
    r"password|passwd|pwd|pass|token|secret|secret_key|access_token|api_?key|signature"
    r"|x-amz-signature|x-amz-credential|x-amz-security-token|awsaccesskeyid"
)
_CONTEXT_RULES: tuple[tuple[re.Pattern[str], str], ...] = (
    # scheme://user:password@host
    (re.compile(r"(?i)([a-z][a-z0-9+.-]*://)[^/\s:@]+:[^/\s@]*@"), rf"\1{REDACTED}@"),
    # ?password=...&token=... in a query string or a form body (also percent-encoded `=`)
    (
        re.compile(rf"(?i)(?<![A-Za-z0-9_-])({_SENSITIVE_PARAMS})(=|%3D)[^&\s\"'#<>;,)\]}}]*"),
        rf"\1\2{REDACTED}",
    ),
    # Authorization: Basic ..., Cookie: ..., as a header line or a dict entry
    (
        re.compile(
            r"(?i)\b(authorization|proxy-authorization|cookie|set-cookie|x-amz-security-token)"
            r"(['\"]?\s*[:=]\s*['\"]?)[^'\"\r\n]+"
        ),
        rf"\1\2{REDACTED}",
    ),
)

_forms: set[str] = set()
_pattern: re.Pattern[str] | None = None


def secret_forms(secret: str) -> set[str]:
    """Every form `secret` takes on its way into a URL: raw, percent-encoded, form-encoded
    (`+` for space), and as aiohttp (yarl) writes it into a query string."""
    in_query = yarl.URL.build(path="/", query={"v": secret}).raw_query_string.removeprefix("v=")
    return {secret, quote(secret, safe=""), quote_plus(secret), in_query}


def register_secret(secret: str) -> None:
    """Scrub `secret`, in each of its encoded forms, from every log event and traceback from
    now on (empty strings are ignored)."""
    global _pattern
    if not secret:
        return
    _forms.update(secret_forms(secret))
    # Longest first, so a secret is replaced whole before any shorter secret inside it.
    alternatives = [_form_pattern(form) for form in sorted(_forms, key=len, reverse=True)]
    _pattern = re.compile("|".join(alternatives))


def _form_pattern(form: str) -> str:
    escaped = re.escape(form)
    if len(form) >= _SUBSTRING_MIN_CHARS:
        return escaped
    # A short secret counts only where it stands apart: not inside a run of letters and digits,
    # nor joined to one by - : . / (so `2026` in 2026-11-28T10:00 or a key's /2026/ stays).
    before = r"(?<![A-Za-z0-9])(?<![A-Za-z0-9][-:./])" if form[0].isalnum() else ""
    after = r"(?![A-Za-z0-9])(?![-:./][A-Za-z0-9])" if form[-1].isalnum() else ""
    return before + escaped + after


def redact(text: str) -> str:
    """Return `text` with credentials in URLs, secret query parameters and headers, and every
    registered secret (see the module docstring for where), replaced by [REDACTED]."""
    for pattern, replacement in _CONTEXT_RULES:
        text = pattern.sub(replacement, text)
    if _pattern is not None:
        text = _pattern.sub(REDACTED, text)
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
    return {
        key: value if key in _STRUCTURAL_FIELDS and isinstance(value, str) else _scrub(value)
        for key, value in event.items()
    }


class _RedactingFormatter(logging.Formatter):
    """Standard-library records (aiohttp, botocore): the message *and* its formatted traceback
    and stack are scrubbed, since library exceptions may quote a request line or a URL."""

    def format(self, record: logging.LogRecord) -> str:
        return redact(super().format(record))


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
    handler.setFormatter(_RedactingFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(logging.WARNING)
