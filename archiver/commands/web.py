"""`archiver web` (serve the call archive) and `archiver web passwd NAME` (add a web user or
change their password). The web part (and ldap3 with it) is imported by the handlers, so
parsing another command never loads it."""

from __future__ import annotations

import argparse
import asyncio
import getpass
import sys
from typing import Any

from archiver.config import config_path, load_config
from archiver.exits import EXIT_CONFIG, EXIT_OK

__all__ = ["add_parser"]


def add_parser(sub: Any, common: argparse.ArgumentParser) -> None:
    """Add `web` (with `web passwd`) to the `archiver` command's subparsers."""
    web = sub.add_parser(
        "web", parents=[common], help="serve the call archive: search, play, download"
    )
    web.set_defaults(handler=_cmd_web, logs_to_stdout=True)
    web_sub = web.add_subparsers(dest="web_command", metavar="[passwd]")
    passwd = web_sub.add_parser(
        "passwd", parents=[common], help="add a web user or change their password"
    )
    passwd.add_argument("name", help="user name: 1-64 of A-Z a-z 0-9 _ . @ -")
    passwd.add_argument(
        "--stdin", action="store_true", help="read the password from stdin (first line)"
    )
    passwd.set_defaults(handler=_cmd_passwd, logs_to_stdout=False)


def _cmd_web(args: argparse.Namespace) -> int:
    from archiver.web import open_context, serve

    cfg = load_config(config_path(args.config))
    users_file = cfg.web.users_path
    if not users_file.exists():
        print(f"error: {users_file} does not exist: add a user with "
              "`archiver web passwd NAME`", file=sys.stderr)  # fmt: skip
        return EXIT_CONFIG
    context = open_context(cfg)
    if not context.users.names():
        context.close()
        print(f"error: {users_file} has no usable (bcrypt) user", file=sys.stderr)
        return EXIT_CONFIG
    try:
        asyncio.run(serve(context))
    finally:
        context.close()
    return EXIT_OK


def _read_password(from_stdin: bool) -> str:
    from archiver.web import InvalidUser

    if from_stdin or not sys.stdin.isatty():
        return sys.stdin.readline().rstrip("\r\n")
    first = getpass.getpass("New password: ")
    if getpass.getpass("Again: ") != first:
        raise InvalidUser("the two passwords differ")
    return first


def _cmd_passwd(args: argparse.Namespace) -> int:
    from archiver.web import InvalidUser, set_password

    cfg = load_config(config_path(args.config))
    try:
        password = _read_password(args.stdin)
        new = set_password(cfg.web.users_file, args.name, password)
    except InvalidUser as error:
        print(f"error: {error.reason}", file=sys.stderr)
        return EXIT_CONFIG
    except OSError as error:
        print(f"error: cannot write {cfg.web.users_file}: {error.strerror}", file=sys.stderr)
        return EXIT_CONFIG
    print(f"{'added' if new else 'changed the password of'} {args.name} in {cfg.web.users_file}")
    return EXIT_OK
