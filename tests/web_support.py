"""A running web archive for tests: recordings archived for real (simulator → ffmpeg → SeaweedFS),
then `archiver web` serving them from a thread of this process."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import os
import threading
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import date
from http.cookiejar import CookieJar
from pathlib import Path
from typing import Any

import bcrypt
from support import start_rig

from archiver.config import Config, S3Config
from archiver.lab.seaweed import SeaweedS3
from archiver.lab.simulator import SimulatorOptions
from archiver.state.catalogue import Catalogue, CatalogueEntry, SearchQuery
from archiver.state.migrate import open_database
from archiver.web import open_context, running

PBX_PASSWORD = "Web-Archive-Pbx-1717"
DAY = date(2016, 11, 17)
USERS = {"ayse": "Ayse-Listens-2024", "admin": "Admin-Sees-All-99"}
SCREENSHOTS = Path(__file__).resolve().parent.parent / "docs" / "screenshots"


def users_file(path: Path, users: Mapping[str, str]) -> Path:
    """An htpasswd file (bcrypt at cost 10, the lowest `archiver web` accepts) for `users`."""
    lines = [
        f"{name}:{bcrypt.hashpw(password.encode(), bcrypt.gensalt(10)).decode()}"
        for name, password in users.items()
    ]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


@contextlib.contextmanager
def s3_environment(seaweed: SeaweedS3) -> Iterator[None]:
    """SeaweedFS's credentials for boto3's default chain, restored on exit."""
    values = {**seaweed.aws_env(), "AWS_CONFIG_FILE": "/nonexistent/aws-config",
              "AWS_SHARED_CREDENTIALS_FILE": "/nonexistent/aws-credentials"}  # fmt: skip
    values.pop("AWS_ENDPOINT_URL_S3")  # the config names the endpoint
    saved = {name: os.environ.get(name) for name in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


def archive_day(
    seaweed: SeaweedS3, tmp: Path, web: Mapping[str, object], *, per_day: int = 6
) -> Config:
    """Archive one simulated day (`per_day` calls) into a new bucket; return the config (with
    `web`)."""
    bucket = f"web-{uuid.uuid4().hex[:12]}"
    seaweed.create_bucket(bucket)
    s3 = S3Config(bucket=bucket, endpoint_url=seaweed.endpoint_url, region="us-east-1",
                  addressing_style="path")  # fmt: skip
    options = SimulatorOptions(
        username="admin", password=PBX_PASSWORD, seed=13, start=DAY,
        days=1, per_day=per_day, max_duration_s=40, odd_names=False,
    )  # fmt: skip

    async def run() -> Config:
        rig = await start_rig(options, s3, seaweed, tmp, tables={"web": dict(web)})
        try:
            (report,) = await rig.archive([DAY])
            assert report.archived == per_day and report.failed == 0, report
        finally:
            await rig.runner.cleanup()
        return rig.cfg

    # In a thread of its own: Playwright's sync API keeps an event loop running in this one.
    with ThreadPoolExecutor(1) as pool:
        return pool.submit(asyncio.run, run()).result()


class WebThread(threading.Thread):
    """`archiver web` (build_app over open_context) on its own event loop in a thread."""

    def __init__(self, cfg: Config) -> None:
        super().__init__(daemon=True, name="archiver-web")
        self.cfg = cfg
        self.port = 0
        self._ready = threading.Event()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stopping: asyncio.Event | None = None
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            asyncio.run(self._main())
        except BaseException as error:  # reported by start()
            self.error = error
            self._ready.set()

    async def _main(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._stopping = asyncio.Event()
        context = open_context(self.cfg)
        try:
            async with running(context) as port:
                self.port = port
                self._ready.set()
                await self._stopping.wait()
        finally:
            context.close()

    def start_serving(self) -> str:
        self.start()
        self._ready.wait(30)
        if self.error is not None or not self.port:
            raise RuntimeError(f"web server did not start: {self.error!r}")
        return f"http://127.0.0.1:{self.port}"

    def stop(self) -> None:
        if self._loop is not None and self._stopping is not None:
            self._loop.call_soon_threadsafe(self._stopping.set)
        self.join(30)


@dataclass
class Site:
    """A served archive: its config, URL and what its catalogue holds."""

    cfg: Config
    url: str
    server: WebThread

    def entries(self) -> list[CatalogueEntry]:
        db = open_database(self.cfg.state.path)
        try:
            return list(Catalogue(db).search(SearchQuery(limit=500)).items)
        finally:
            db.close()

    def object_bytes(self, seaweed: SeaweedS3, key: str) -> bytes:
        body = seaweed.client().get_object(Bucket=self.cfg.s3.bucket, Key=key)["Body"]
        data: bytes = body.read()
        return data


def web_table(tmp: Path, **overrides: Any) -> dict[str, object]:
    table: dict[str, object] = {
        "listen": "127.0.0.1:0",
        "users_file": str(users_file(tmp / "web-users", USERS)),
        "admins": ["admin"],
        "timezone": "Europe/Istanbul",
    }
    table.update(overrides)
    return table


@contextlib.contextmanager
def serving(cfg: Config) -> Iterator[Site]:
    server = WebThread(cfg)
    url = server.start_serving()
    try:
        yield Site(cfg=cfg, url=url, server=server)
    finally:
        server.stop()


class Client:
    """A plain HTTP client with a cookie jar that does not follow redirects (to see them)."""

    def __init__(self, base: str) -> None:
        self.base = base
        self.jar = CookieJar()

        class _NoRedirect(urllib.request.HTTPRedirectHandler):
            def redirect_request(self, *args: Any, **kwargs: Any) -> None:
                return None

        self._opener = urllib.request.build_opener(
            _NoRedirect(), urllib.request.HTTPCookieProcessor(self.jar)
        )

    def request(
        self,
        path: str,
        *,
        data: Mapping[str, str | list[str]] | None = None,
        headers: Mapping[str, str] | None = None,
        basic: tuple[str, str] | None = None,
    ) -> tuple[int, dict[str, str], bytes]:
        body = None
        if data is not None:
            from urllib.parse import urlencode

            body = urlencode(data, doseq=True).encode()
        request = urllib.request.Request(  # noqa: S310  # self.base is our http:// server
            self.base + path, data=body, headers=dict(headers or {})
        )
        if basic is not None:
            token = base64.b64encode(f"{basic[0]}:{basic[1]}".encode()).decode()
            request.add_header("Authorization", f"Basic {token}")
        try:
            with self._opener.open(request, timeout=30) as response:
                return response.status, dict(response.headers), response.read()
        except urllib.error.HTTPError as error:
            return error.code, dict(error.headers), error.read()

    def cookie(self, name: str) -> str | None:
        return next((c.value for c in self.jar if c.name == name), None)

    def login(self, name: str, password: str) -> int:
        self.request("/login")
        status, _, _ = self.request(
            "/login",
            data={"username": name, "password": password,
                  "csrf_token": self.cookie("archiver_csrf") or ""},
        )  # fmt: skip
        return status
