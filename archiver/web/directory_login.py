"""A login the htpasswd file does not know, checked by the directory (`[web.ldap]`): the user's
groups are handed to the roles, and the session carries a directory stamp (`session_valid`
keeps it while the directory login is remembered and no local user of that name appeared)."""

from __future__ import annotations

import hashlib
from typing import Final

from archiver.web.context import WebContext, log
from archiver.web.directory import DirectoryUnavailable
from archiver.web.users import PasswordCheck

__all__ = ["DIRECTORY_STAMP", "directory_login", "directory_session_valid"]

DIRECTORY_STAMP: Final = "directory:"


async def directory_login(context: WebContext, name: str, password: str) -> PasswordCheck:
    """Ask the directory; a directory that cannot answer is a refusal with `unavailable` set
    (logged as `directory_unavailable`, never with the password)."""
    directory = context.directory
    if directory is None:
        return PasswordCheck(accepted=False, stamp=None, pad_s=0.0)
    try:
        user = await context.in_hash(directory.authenticate, name, password)
    except DirectoryUnavailable as error:
        log.error("directory_unavailable", reason=error.reason)
        return PasswordCheck(accepted=False, stamp=None, pad_s=0.0, unavailable=True)
    if user is None:
        return PasswordCheck(accepted=False, stamp=None, pad_s=0.0)
    context.roles.remember_directory_groups(name, user.groups)
    digest = hashlib.sha256("\n".join((user.dn, *user.groups)).encode()).hexdigest()[:32]
    log.info("directory_login", user=name, groups=len(user.groups))
    return PasswordCheck(accepted=True, stamp=DIRECTORY_STAMP + digest, pad_s=0.0)


def directory_session_valid(context: WebContext, name: str, stamp: str) -> bool:
    """A directory session stands while directory login is configured, no local user took the
    name, and this process remembers the login."""
    return (
        stamp.startswith(DIRECTORY_STAMP)
        and context.directory is not None
        and context.users.stamp(name) is None
        and context.roles.knows_directory_user(name)
    )
