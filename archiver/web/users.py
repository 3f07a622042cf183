"""Web users: an Apache htpasswd file with bcrypt hashes (`htpasswd -B` writes the same).

One `name:hash` per line; blank lines and `#` comments are kept as they are. Only bcrypt hashes
(`$2y$`, `$2b$`, `$2a$`) of cost 10 or more are accepted: a line with another scheme (MD5, SHA1,
crypt) or a cheaper hash is refused with a log event naming the line and how to re-hash it, never
silently used. The file is read again when it changes, so `archiver web passwd` takes effect
without a restart (and a removed user's or changed password's sessions end: `stamp`).

A check takes the same time whatever the name: an unknown name is checked against a dummy hash of
the file's highest cost, and a user whose hash is cheaper than that is padded (`PasswordCheck.
pad_s`, waited by the caller off the hash threads) to what the highest cost would have taken.
"""

from __future__ import annotations

import functools
import hashlib
import os
import re
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Final

import bcrypt
import structlog

__all__ = [
    "MIN_COST",
    "USERNAME_RE",
    "InvalidUser",
    "PasswordCheck",
    "Users",
    "hash_password",
    "set_password",
]

log = structlog.get_logger(__name__)

USERNAME_RE: Final = re.compile(r"[A-Za-z0-9_.@-]{1,64}")
_BCRYPT_RE: Final = re.compile(r"\$2[aby]\$(?P<cost>[0-9]{2})\$[./A-Za-z0-9]{53}")
_MAX_PASSWORD_BYTES: Final = 72  # bcrypt's limit; longer ones are refused, not cut
DEFAULT_COST: Final = 12
# Below this a guessed password is cheap to test offline and the timing of a check tells a real
# user from an unknown name (cost 5: 3 ms against 340 ms for the dummy).
MIN_COST: Final = 10


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
        match = _BCRYPT_RE.fullmatch(hashed)
        if match is None:
            log.warning(
                "web_user_line_refused", path=str(path), line=number, reason="not a bcrypt hash"
            )
            continue
        cost = int(match.group("cost"))
        if cost < MIN_COST:
            log.warning(
                "web_user_line_refused",
                path=str(path),
                line=number,
                user=name,
                reason=f"bcrypt cost {cost} is below {MIN_COST}: set the password again with "
                f"`archiver web passwd {name}` (cost {DEFAULT_COST}) or `htpasswd -B -C "
                f"{DEFAULT_COST} FILE {name}`",
            )
            continue
        users[name] = hashed.encode("ascii")
    return users


def _cost(hashed: bytes) -> int:
    return int(hashed[4:6])


@functools.cache
def _dummy_hash(cost: int) -> bytes:
    """Checked against when the user is unknown, so a wrong name costs as long as a wrong
    password of the file's dearest user."""
    return bcrypt.hashpw(b"not a password", bcrypt.gensalt(cost))


@dataclass(frozen=True, slots=True)
class PasswordCheck:
    """The outcome of one password check: `accepted`, the `stamp` of the credential it matched
    (None when refused), and `pad_s`, how long the caller should wait before answering so that
    this check took as long as one at the file's highest cost."""

    accepted: bool
    stamp: str | None
    pad_s: float
    # The directory ([web.ldap]) could not answer: a refusal the login page explains.
    unavailable: bool = False


@dataclass(frozen=True, slots=True)
class _Snapshot:
    mtime_ns: int
    size: int
    users: dict[str, bytes]

    @property
    def max_cost(self) -> int:
        return max((_cost(hashed) for hashed in self.users.values()), default=DEFAULT_COST)


class Users:
    """The users of the htpasswd file at `path`, re-read when the file changes. Thread-safe."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._lock = threading.Lock()
        self._snapshot = _Snapshot(-1, -1, {})

    def _current(self) -> _Snapshot:
        try:
            stat = self.path.stat()
        except FileNotFoundError:
            return _Snapshot(-1, -1, {})
        with self._lock:
            if (stat.st_mtime_ns, stat.st_size) != (self._snapshot.mtime_ns, self._snapshot.size):
                text = self.path.read_text(encoding="utf-8", errors="replace")
                self._snapshot = _Snapshot(stat.st_mtime_ns, stat.st_size, _parse(text, self.path))
            return self._snapshot

    def names(self) -> list[str]:
        return sorted(self._current().users)

    def stamp(self, name: str) -> str | None:
        """A digest of `name`'s current password hash (None if `name` is not a user): a session
        opened with another stamp belongs to a removed user or an old password."""
        hashed = self._current().users.get(name)
        return None if hashed is None else _stamp(hashed)

    def verify(self, name: str, password: str) -> PasswordCheck:
        """Check `password` for `name` with one bcrypt check whether or not `name` is a user.
        Blocking: call it in a thread; then wait `pad_s` (not in that thread)."""
        snapshot = self._current()
        hashed = snapshot.users.get(name)
        secret = password.encode("utf-8")[:_MAX_PASSWORD_BYTES]
        started_s = time.perf_counter()
        if hashed is None:
            bcrypt.checkpw(secret, _dummy_hash(snapshot.max_cost))
            return PasswordCheck(accepted=False, stamp=None, pad_s=0.0)
        try:
            accepted = bcrypt.checkpw(secret, hashed)
        except ValueError:  # a malformed hash in the file: that user cannot log in
            log.warning("web_user_hash_malformed", path=str(self.path))
            accepted = False
        # bcrypt's time doubles with each step of cost: scale what this check took.
        took_s = time.perf_counter() - started_s
        pad_s = took_s * (2 ** (snapshot.max_cost - _cost(hashed)) - 1)
        return PasswordCheck(accepted=accepted, stamp=_stamp(hashed) if accepted else None,
                             pad_s=pad_s)  # fmt: skip


def _stamp(hashed: bytes) -> str:
    return hashlib.sha256(hashed).hexdigest()[:32]


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
