"""A pass-through HTTP proxy in front of the local S3 server that counts the uploads it sees.

HEAD-before-PUT makes a recording archived twice look archived once in the bucket; counting the
PUTs that S3 accepted shows double work all the same (`scripts/chaos` prints `uploads N`).
Requests and answers pass byte for byte (headers too, so SigV4 still verifies); while the
upstream is down the proxy answers 503, as an unreachable S3 endpoint behind a balancer does.
Runs on its own event loop in a daemon thread, bound to 127.0.0.1 on a free port.
"""

from __future__ import annotations

import asyncio
import threading
from collections import Counter
from types import TracebackType
from typing import Self

import aiohttp
from aiohttp import web

__all__ = ["CountingS3Proxy"]

_DROPPED_HEADERS = frozenset({"transfer-encoding", "content-encoding", "connection"})


class CountingS3Proxy:
    """`with CountingS3Proxy(upstream) as proxy:` point S3 clients at `proxy.endpoint_url`;
    `proxy.uploads` counts accepted object PUTs (and completed multipart uploads) by key."""

    def __init__(self, upstream: str) -> None:
        self.upstream = upstream.rstrip("/")
        self.uploads: Counter[str] = Counter()
        self._lock = threading.Lock()
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="s3-proxy", daemon=True)
        self._runner: web.AppRunner | None = None
        self._session: aiohttp.ClientSession | None = None
        self.port = 0

    @property
    def endpoint_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def upload_count(self, prefix: str = "") -> int:
        """Accepted uploads of keys (as `/bucket/key` paths) starting with `prefix`."""
        with self._lock:
            return sum(n for path, n in self.uploads.items() if path.startswith(prefix))

    def __enter__(self) -> Self:
        self._thread.start()
        asyncio.run_coroutine_threadsafe(self._start(), self._loop).result(timeout=30)
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        value: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        asyncio.run_coroutine_threadsafe(self._stop(), self._loop).result(timeout=30)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=10)
        self._loop.close()

    async def _start(self) -> None:
        self._session = aiohttp.ClientSession(auto_decompress=False)
        app = web.Application(client_max_size=1024**3)
        app.router.add_route("*", "/{tail:.*}", self._handle)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        self.port = self._runner.addresses[0][1]

    async def _stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
        if self._session is not None:
            await self._session.close()

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        assert self._session is not None  # noqa: S101 - set in _start, before any request
        try:
            body = await request.read()
        except ConnectionResetError:  # the client died mid-upload (chaos kills it): nothing sent
            return web.Response(status=400)
        try:
            async with self._session.request(
                request.method,
                self.upstream + request.path_qs,
                headers=request.headers,
                data=body or None,
                skip_auto_headers=["Content-Type", "Accept-Encoding"],
            ) as upstream:
                payload = await upstream.read()
                status = upstream.status
                headers = dict(upstream.headers)
        except aiohttp.ClientError:
            return web.Response(status=503, text="upstream unreachable")
        if status == 200 and self._is_upload(request):
            with self._lock:
                self.uploads[request.path] += 1
        drop = set(_DROPPED_HEADERS)
        if request.method != "HEAD":
            drop.add("content-length")
        kept = {k: v for k, v in headers.items() if k.lower() not in drop}
        return web.Response(status=status, headers=kept, body=payload or None)

    @staticmethod
    def _is_upload(request: web.Request) -> bool:
        """A whole object's PUT (not a part, not a copy) or a multipart upload's completion."""
        query = request.query
        if request.method == "PUT":
            return "partNumber" not in query and "x-amz-copy-source" not in request.headers
        return request.method == "POST" and "uploadId" in query
