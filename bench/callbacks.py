"""How fast the call-result receiver answers: N callbacks over real HTTP into a real SQLite file.

    .venv/bin/python bench/callbacks.py [N] [CONCURRENCY]

Prints the latency percentiles seen by the client and the throughput. Rate limits are raised out
of the way; what is measured is parsing, the token check, the stored event and its JSON log line
(written to /dev/null, as the daemon writes one per callback to the journal).
"""

from __future__ import annotations

import asyncio
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import aiohttp

from archiver.calls.callbacks import add_callback_routes
from archiver.config import CallbacksConfig
from archiver.logs import configure_logging
from archiver.service.http import Health, build_http_app, start_http
from archiver.state.calls import CallLog

TOKEN = "bench-token-0123456789abcdef"  # noqa: S105 -- a throwaway local test token


async def main(total: int, concurrency: int) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        calls = CallLog.open(Path(tmp) / "ledger.sqlite3")
        cfg = CallbacksConfig(
            enabled=True, token=TOKEN, per_source_burst=10**5, global_burst=10**6,  # type: ignore[arg-type]
            per_source_rate_per_s=10**4, global_rate_per_s=10**5,
        )  # fmt: skip
        app = build_http_app(Health())
        add_callback_routes(app, cfg, calls)
        runner, port = await start_http(app, "127.0.0.1:0")
        url = f"http://127.0.0.1:{port}/pbx/call-result/{TOKEN}"
        latencies_ms: list[float] = []
        queue = list(range(total))

        async def worker(session: aiohttp.ClientSession) -> None:
            while queue:
                n = queue.pop()
                started = time.perf_counter()
                final = n % 5 == 0
                params = {"sonuc": "ANSWER" if final else str(n % 9 + 1),
                          "telefon": f"90312{n:07d}", "son": "1" if final else "0"}  # fmt: skip
                async with session.get(url, params=params) as response:
                    assert response.status == 200
                    await response.read()
                latencies_ms.append((time.perf_counter() - started) * 1000)

        async with aiohttp.ClientSession() as session:
            began = time.perf_counter()
            await asyncio.gather(*(worker(session) for _ in range(concurrency)))
            elapsed_s = time.perf_counter() - began
        await runner.cleanup()
        stored = len(calls.events())
        calls.close()
    q = statistics.quantiles(latencies_ms, n=100)
    print(f"callbacks={total} concurrency={concurrency} stored={stored}")
    print(f"latency_ms p50={q[49]:.2f} p99={q[98]:.2f} max={max(latencies_ms):.2f}")
    print(f"throughput_per_s={total / elapsed_s:.0f}")


if __name__ == "__main__":
    configure_logging(level="info", stream=Path(os.devnull).open("w"))  # noqa: SIM115 -- process-long
    asyncio.run(main(int(sys.argv[1]) if len(sys.argv) > 1 else 2000,
                     int(sys.argv[2]) if len(sys.argv) > 2 else 1))  # fmt: skip
