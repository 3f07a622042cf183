"""Pages from Jinja2 templates (autoescaped: every value a PBX, a user or a URL brought is
escaped), in the request's language, with the headers every page carries."""

from __future__ import annotations

from typing import Any, Final

import jinja2
from aiohttp import web

from archiver.web.i18n import LANGUAGES, Language, choose_language, texts

__all__ = ["LANG_COOKIE", "SECURITY_HEADERS", "language_of", "render", "template_environment"]

LANG_COOKIE: Final = "lang"
# No inline script or style anywhere, so the policy can forbid both; media and fetches only from
# this server (the audio is streamed through it).
SECURITY_HEADERS: Final = {
    "Content-Security-Policy": (
        "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
        "media-src 'self'; connect-src 'self'; form-action 'self'; frame-ancestors 'none'; "
        "base-uri 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "X-Frame-Options": "DENY",
}


def template_environment() -> jinja2.Environment:
    return jinja2.Environment(
        loader=jinja2.PackageLoader("archiver.web", "templates"),
        autoescape=True,
        undefined=jinja2.StrictUndefined,  # a missing value is a bug, not an empty string
    )


def language_of(request: web.Request) -> Language:
    return choose_language(request.cookies.get(LANG_COOKIE), request.headers.get("Accept-Language"))


def render(
    request: web.Request,
    environment: jinja2.Environment,
    template: str,
    *,
    status: int = 200,
    headers: dict[str, str] | None = None,
    **values: Any,
) -> web.Response:
    """The page `template` filled with `values`, the language's texts as `t`, the language as
    `lang` and the other language as `other_lang`."""
    language = language_of(request)
    other = next(code for code in LANGUAGES if code != language)
    body = environment.get_template(template).render(
        t=texts(language), lang=language, other_lang=other, path=request.path_qs, **values
    )
    response = web.Response(
        text=body, status=status, content_type="text/html", charset="utf-8", headers=headers
    )
    response.headers["Cache-Control"] = "no-store"
    return response
