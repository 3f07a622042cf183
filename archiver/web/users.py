"""Web users: an Apache htpasswd file with bcrypt hashes (`htpasswd -B` writes the same).

One `name:hash` per line; blank lines and `#` comments are kept as they are. Only bcrypt hashes
(`$2y$`, `$2b$`, `$2a$`) are accepted: a line with another scheme (MD5, SHA1, crypt) is refused
with a log event naming the line, never silently used. The file is read again when it changes, so
`archiver web passwd` takes effect without a restart.
"""

from __future__ import annotations

import os
import re
import tempfile
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Final

import bcrypt
import structlog

__all__ = ["USERNAME_RE", "InvalidUser", "Users", "hash_password", "set_password"]

log = structlog.get_logger(__name__)

USERNAME_RE: Final = re.compile(r"[A-Za-z0-9_.@-]{1,64}")
_BCRYPT_PREFIXES: Final = ("$2y$", "$2b$", "$2a$")
# Checked against when the user is unknown, so a wrong name costs as long as a wrong password.
_DUMMY_HASH: Final = bcrypt.hashpw(b"not a password", bcrypt.gensalt(12))
_MAX_PASSWORD_BYTES: Final = 72  # bcrypt's limit; longer ones are refused, not cut
DEFAULT_COST: Final = 12


class InvalidUser(ValueError):
    """A user name or password that cannot be stored; `reason` is safe to show."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def hash_password(password: str, *, cost: int = DEFAULT_COST) -> str:
    """A bcrypt hash of `password` in htpasswd's `$2y$` spelling. Raise `InvalidUser` for an
    empty password or one longer than bcrypt's 72 bytes."""
    secret = password.encode("utf-8")
    if not secret or len(secret) > _MAX_PASSWORD_BYTES:
        raise InvalidUser(f"a password is 1 to {_MAX_PASSWORD_BYTES} bytes")
    hashed = bcrypt.hashpw(secret, bcrypt.gensalt(cost)).decode("ascii")
    return "$2y$" + hashed[4:]  # the same algorithm; $2y$ is what Apache writes and reads


def _parse(text: str, path: Path) -> dict[str, bytes]:
    users: dict[str, bytes] = {}
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        name, sep, hashed = line.strip().partition(":")
        if not sep or USERNAME_RE.fullmatch(name) is None:
            log.warning("web_user_line_refused", path=str(path), line=number, reason="bad name")
            continue
        if not hashed.startswith(_BCRYPT_PREFIXES):
            log.warning(
                "web_user_line_refused", path=str(path), line=number, reason="not a bcrypt hash"
            )
            continue
        users[name] = hashed.encode("ascii", "replace")
    return users


@dataclass(frozen=True, slots=True)
class _Snapshot:
    mtime_ns: int
    size: int
    users: dict[str, bytes]


class Users:
    """The users of the htpasswd file at `path`, re-read when the file changes. Thread-safe."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._lock = threading.Lock()
        self._snapshot = _Snapshot(-1, -1, {})

    def _current(self) -> dict[str, bytes]:
        try:
            stat = self.path.stat()
        except FileNotFoundError:
            return {}
        with self._lock:
            if (stat.st_mtime_ns, stat.st_size) != (self._snapshot.mtime_ns, self._snapshot.size):
                text = self.path.read_text(encoding="utf-8", errors="replace")
                self._snapshot = _Snapshot(stat.st_mtime_ns, stat.st_size, _parse(text, self.path))
            return self._snapshot.users

    def names(self) -> list[str]:
        return sorted(self._current())

    def verify(self, name: str, password: str) -> bool:
        """True if `name` is a user and `password` is theirs. As slow for an unknown name as
        for a wrong password (one bcrypt check either way). Blocking: call it in a thread."""
        hashed = self._current().get(name)
        secret = password.encode("utf-8")[:_MAX_PASSWORD_BYTES]
        if hashed is None:
            bcrypt.checkpw(secret, _DUMMY_HASH)
            return False
        try:
            return bcrypt.checkpw(secret, hashed)
        except ValueError:  # a malformed hash in the file: that user cannot log in
            log.warning("web_user_hash_malformed", path=str(self.path))
            return False


def set_password(path: Path, name: str, password: str, *, cost: int = DEFAULT_COST) -> bool:
    """Add user `name` to the htpasswd file at `path` (created mode 0600) or change their
    password; other lines stay as they are. Return True if the user was new. The file is
    replaced atomically. Raise `InvalidUser` for a bad name or password, `OSError` if the file
    cannot be written."""
    if USERNAME_RE.fullmatch(name) is None:
        raise InvalidUser("a user name is 1-64 of A-Z a-z 0-9 _ . @ -")
    entry = f"{name}:{hash_password(password, cost=cost)}"
    lines = path.read_text(encoding="utf-8").splitlines() if path.exists() else []
    new = True
    for index, line in enumerate(lines):
        if line.partition(":")[0].strip() == name:
            lines[index] = entry
            new = False
    if new:
        lines.append(entry)
    path.parent.mkdir(parents=True, exist_ok=True)
    mode = path.stat().st_mode & 0o777 if path.exists() else 0o600
    handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(handle, "w", encoding="utf-8") as out:
            out.write("".join(f"{line}\n" for line in lines))
        Path(temporary).chmod(mode)
        Path(temporary).replace(path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
    return new
