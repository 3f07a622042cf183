"""A PostgreSQL URL as libpq reads it: the connection string we hand to libpq (`make_conninfo`)
and the form we show in messages (`redact_url`). Both read the URL the way libpq does, with
percent-decoded parameter names (`?pass%77ord=` is `password`), the userinfo and every parameter
that carries a secret, so that what libpq would use as a password never reaches a log line."""

from __future__ import annotations

import re
from typing import Any, Final
from urllib.parse import unquote, urlsplit, urlunsplit

from psycopg import conninfo

from archiver.config import postgres_url_secrets

__all__ = ["make_conninfo", "redact_url"]

_SECRET_NAMES: Final = frozenset({"password", "sslpassword"})
# key=value form: `password = 'it''s' host=x` (libpq's quoting: single quotes, backslash escapes).
_KEYWORD_SECRET_RE: Final = re.compile(
    r"\b(password|sslpassword)(\s*=\s*)('(?:[^'\\]|\\.)*'|[^\s']+)", re.IGNORECASE
)
_REDACTED: Final = "***"


def make_conninfo(url: str, password: str | None, tls: dict[str, str]) -> str:
    """The libpq connection string for `url` with the password and TLS options added."""
    extra: dict[str, Any] = dict(tls)
    if password is not None:
        extra["password"] = password
    extra.setdefault("application_name", "archiver")
    extra.setdefault("connect_timeout", 10)
    return conninfo.make_conninfo(url, **extra)


def redact_url(url: str) -> str:
    """`url` with every secret libpq would read from it replaced by `***`, for messages. If a
    secret could still be read from the result (a URL too odd to take apart), the whole URL
    is hidden instead."""
    parts = urlsplit(url)
    if parts.scheme in ("postgresql", "postgres"):
        shown = _redact_uri(url)
    else:
        shown = _KEYWORD_SECRET_RE.sub(lambda m: m[1] + m[2] + _REDACTED, url)
    try:
        leaks = _secret_values(url) - {_REDACTED}
    except ValueError:
        return shown if shown != url else "postgresql://(unreadable URL)"
    if any(value in shown for value in leaks):
        return "postgresql://(hidden: it holds a password)"
    return shown


def _redact_uri(url: str) -> str:
    parts = urlsplit(url)
    userinfo, at, hosts = parts.netloc.rpartition("@")
    if at and ":" in userinfo:
        userinfo = userinfo.split(":", 1)[0] + ":" + _REDACTED
    netloc = f"{userinfo}@{hosts}" if at else hosts
    pairs = []
    for pair in parts.query.split("&") if parts.query else []:
        name, sep, _ = pair.partition("=")
        if unquote(name).strip().lower() in _SECRET_NAMES:
            pair = f"{name}{sep}{_REDACTED}"
        pairs.append(pair)
    return urlunsplit((parts.scheme, netloc, parts.path, "&".join(pairs), parts.fragment))


def _secret_values(url: str) -> set[str]:
    params = conninfo.conninfo_to_dict(url)
    names = postgres_url_secrets(url)
    return {str(params[name]) for name in names if params.get(name)}
