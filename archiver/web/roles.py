"""Who may do what: each user's role (listener, compliance, admin) and scope, from the TOML's
`[web.users.NAME]`, `[web.groups.NAME]`, `admins` and `default_role`, and the directory groups a
directory login brought.

Rules (README "Roles and scopes"): a user's own table gives its role and scope; what it leaves out
comes from the groups the user is in (the highest role; the union of their scopes), then from
`default_role` and the whole archive. `admins` are admins. An admin sees every call.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Final

from archiver.config import WebConfig, WebGroupConfig, WebRole
from archiver.scope import WHOLE, Scope

__all__ = ["Access", "Roles"]

_RANK: Final[dict[WebRole, int]] = {"listener": 0, "compliance": 1, "admin": 2}


@dataclass(frozen=True, slots=True)
class Access:
    """What one user may do: `role` and the calls they may see (`scope`)."""

    username: str
    role: WebRole
    scope: Scope

    @property
    def can_audit(self) -> bool:
        """Access history, the audit page and court exports."""
        return self.role in ("compliance", "admin")

    @property
    def is_admin(self) -> bool:
        return self.role == "admin"


class Roles:
    """Resolves a user name (and the directory groups of a directory login) into an `Access`."""

    def __init__(self, web: WebConfig) -> None:
        self._web = web
        self._directory: dict[str, tuple[str, ...]] = {}
        self._lock = threading.Lock()

    def remember_directory_groups(self, username: str, groups: Iterable[str]) -> None:
        """The groups the directory gave `username` at their last login (kept in memory for as
        long as their sessions may live)."""
        with self._lock:
            self._directory[username] = tuple(groups)

    def knows_directory_user(self, username: str) -> bool:
        with self._lock:
            return username in self._directory

    def access(self, username: str) -> Access:
        with self._lock:
            directory = self._directory.get(username, ())
        own = self._web.users.get(username)
        groups = [g for g in self._web.groups.values() if _member(g, username, directory)]
        roles: list[WebRole] = [g.role for g in groups if g.role is not None]
        role: WebRole = max(roles, key=_RANK.__getitem__) if roles else self._web.default_role
        if own is not None and own.role is not None:
            role = own.role
        if username in self._web.admins:
            role = "admin"
        if role == "admin":
            return Access(username, role, WHOLE)
        return Access(username, role, _scope(own.scope if own else None, groups))


def _member(group: WebGroupConfig, username: str, directory: tuple[str, ...]) -> bool:
    if username in group.members:
        return True
    wanted = {name.casefold() for name in group.directory_groups}
    return any(name.casefold() in wanted for name in directory)


def _scope(own: Scope | None, groups: list[WebGroupConfig]) -> Scope:
    if own is not None:
        return own
    scopes = [scope for group in groups if (scope := group.scope) is not None]
    if not scopes or len(scopes) < len(groups):
        return WHOLE  # no group, or a group without a scope: the whole archive
    merged = scopes[0]
    for scope in scopes[1:]:
        merged = merged.union(scope)
    return merged
