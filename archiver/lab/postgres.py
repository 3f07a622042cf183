"""A real PostgreSQL server on this machine, for tests, the chaos run and the benchmark.

The product never imports this module. `LocalPostgres` runs Debian's `initdb` and `pg_ctl` on a
temporary folder, listening on 127.0.0.1 only, on a free port, with its Unix socket in that folder.
PostgreSQL refuses to run as root, so as root it runs them as the `postgres` system user (which
owns the folder). It is stopped through its own data directory's PID (`pg_ctl stop`), never by
name; `crash()` stops it with `-m immediate` (a database crash) and `start()` brings it back on the
same port and data.

    with LocalPostgres() as pg:
        url = pg.create_database("archiver")
"""

from __future__ import annotations

import atexit
import contextlib
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import uuid
import weakref
from pathlib import Path
from types import TracebackType
from typing import Self

__all__ = ["LocalPostgres", "PostgresError", "find_bindir"]

_HOST = "127.0.0.1"
_SUPERUSER = "archiver_test"
_LIVE: weakref.WeakSet[LocalPostgres] = weakref.WeakSet()


class PostgresError(RuntimeError):
    """initdb/pg_ctl could not be found or failed; the message ends with the log's tail."""


def find_bindir() -> Path:
    """The folder of Debian's PostgreSQL programs (the newest version installed)."""
    found = sorted(Path("/usr/lib/postgresql").glob("*/bin/pg_ctl"), key=_version_of)
    if found:
        return found[-1].parent
    pg_config = shutil.which("pg_config")
    if pg_config is not None:
        bindir = subprocess.run(
            [pg_config, "--bindir"], capture_output=True, text=True, check=False
        ).stdout.strip()
        if bindir and (Path(bindir) / "pg_ctl").exists():
            return Path(bindir)
    raise PostgresError("PostgreSQL is not installed: run scripts/bootstrap (apt-get postgresql)")


def _version_of(path: Path) -> int:
    part = path.parent.parent.name
    return int(part) if part.isdigit() else 0


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind((_HOST, 0))
        return int(probe.getsockname()[1])


class LocalPostgres:
    """A throwaway PostgreSQL server: `-A trust` for the superuser `archiver_test` on 127.0.0.1
    (or `scram-sha-256` with `password`), stopped and deleted on `close()`."""

    def __init__(self, *, password: str | None = None) -> None:
        self.password = password
        self.port = _free_port()
        self._bindir = find_bindir()
        self._root = Path(tempfile.mkdtemp(prefix="archiver-pg-"))
        self._root.chmod(0o755)
        self._as_postgres = os.geteuid() == 0
        if self._as_postgres:
            shutil.chown(self._root, user="postgres")
        self._initdb()
        _LIVE.add(self)

    @property
    def data_dir(self) -> Path:
        return self._root / "data"

    @property
    def log_path(self) -> Path:
        return self._root / "log"

    @property
    def superuser(self) -> str:
        return _SUPERUSER

    def url(self, database: str = "postgres", *, user: str = _SUPERUSER) -> str:
        """A URL without a password (give it through the state config's password sources)."""
        return f"postgresql://{user}@{_HOST}:{self.port}/{database}"

    @property
    def pid(self) -> int | None:
        """The postmaster's PID from its own data directory, or None if it is not running."""
        try:
            first = (self.data_dir / "postmaster.pid").read_text().split("\n", 1)[0]
        except OSError:
            return None
        return int(first) if first.strip().isdigit() else None

    def start(self) -> None:
        """Start (or start again) on the same port and data; return when it accepts connections."""
        options = f"-c listen_addresses={_HOST} -p {self.port} -k {self._root} -c fsync=off"
        self._pg_ctl("start", "-w", "-t", "60", "-l", str(self.log_path), "-o", options)

    def stop(self) -> None:
        """A clean shutdown (`-m fast`)."""
        self._pg_ctl("stop", "-m", "fast", "-w")

    def crash(self) -> None:
        """Stop at once without a checkpoint (`-m immediate`): what a crashed server leaves."""
        self._pg_ctl("stop", "-m", "immediate", "-w")

    def psql(self, sql: str, database: str = "postgres") -> str:
        """Run `sql` as the superuser; return psql's output. Raise PostgresError on failure."""
        env = {**os.environ, "PGPASSWORD": self.password or ""}
        done = subprocess.run(
            ["psql", "-X", "-q", "-At", "-v", "ON_ERROR_STOP=1", "-h", _HOST, "-p",
             str(self.port), "-U", _SUPERUSER, "-d", database, "-c", sql],
            capture_output=True, text=True, env=env, check=False,
        )  # fmt: skip
        if done.returncode != 0:
            raise PostgresError(f"psql failed: {done.stderr.strip()}")
        return done.stdout

    def create_database(self, name: str | None = None) -> str:
        """Create a new database (a fresh unique name if none given); return its URL."""
        name = name or f"t_{uuid.uuid4().hex[:12]}"
        self.psql(f'CREATE DATABASE "{name}"')
        return self.url(name)

    def close(self) -> None:
        """Stop the server (by its data directory's PID) and delete its folder."""
        if self.pid is not None:
            try:
                self.stop()
            except PostgresError:
                pid = self.pid
                if pid is not None:
                    with contextlib.suppress(ProcessLookupError):
                        os.kill(pid, signal.SIGQUIT)
        shutil.rmtree(self._root, ignore_errors=True)
        _LIVE.discard(self)

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        value: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()

    def _initdb(self) -> None:
        auth = "trust"
        extra: list[str] = []
        if self.password is not None:
            pwfile = self._root / "pwfile"
            pwfile.write_text(self.password)
            if self._as_postgres:
                shutil.chown(pwfile, user="postgres")
            auth = "scram-sha-256"
            extra = [f"--pwfile={pwfile}"]
        self._run(
            str(self._bindir / "initdb"), "-D", str(self.data_dir), "-A", auth, "-U", _SUPERUSER,
            "--no-sync", "-E", "UTF8", *extra,
        )  # fmt: skip

    def _pg_ctl(self, *args: str) -> None:
        self._run(str(self._bindir / "pg_ctl"), "-D", str(self.data_dir), *args)

    def _run(self, *argv: str) -> None:
        command = ["runuser", "-u", "postgres", "--", *argv] if self._as_postgres else list(argv)
        done = subprocess.run(command, capture_output=True, text=True, check=False)
        if done.returncode != 0:
            raise PostgresError(
                f"{Path(argv[0]).name} failed ({done.returncode}): {done.stderr.strip()[-500:]}"
                f"\n{self._log_tail()}"
            )

    def _log_tail(self, lines: int = 10) -> str:
        try:
            return "\n".join(self.log_path.read_text().splitlines()[-lines:])
        except OSError:
            return "(no log)"


@atexit.register
def _stop_leftovers() -> None:
    for server in list(_LIVE):
        server.close()
