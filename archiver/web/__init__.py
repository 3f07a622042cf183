"""The web archive (`archiver web`): search the catalogue, play and download recordings streamed
from the bucket, a status view, a JSON API, users, sessions and the access log. It reads the state
and S3 objects only; it never imports the pipeline, the PBX client or the transcoder."""

from archiver.web.app import build_app, open_context, running, serve
from archiver.web.context import WebContext
from archiver.web.users import InvalidUser, Users, set_password

__all__ = [
    "InvalidUser",
    "Users",
    "WebContext",
    "build_app",
    "open_context",
    "running",
    "serve",
    "set_password",
]
