"""Pressure on the PBX: the adaptive limit of requests in flight and the bandwidth cap."""

from __future__ import annotations

import asyncio
import statistics
import time
from datetime import date
from pathlib import Path
from zoneinfo import ZoneInfo

from archiver.config import PbxConfig
from archiver.lab.simulator import SimulatorOptions, start_simulator
from archiver.lab.simulator.server import LOAD_KEY
from archiver.names import parse_path
from archiver.pbx.client import PbxClient, date_pattern
from archiver.pbx.pressure import AdaptiveLimit, Answer, Bandwidth
from archiver.pipeline.plan import estimated_bytes

FIRST_DAY = date(2016, 11, 17)


class _Clock:
    def __init__(self) -> None:
        self.now_s = 100.0

    def __call__(self) -> float:
        return self.now_s


async def _answer(limit: AdaptiveLimit, clock: _Clock, took_s: float) -> None:
    async with limit.slot("download") as answer:
        clock.now_s += took_s
        answer.answered()


async def test_slow_answers_shrink_the_limit_and_quick_full_ones_grow_it() -> None:
    clock = _Clock()
    limit = AdaptiveLimit(8, clock=clock)
    await _answer(limit, clock, 0.2)  # the quiet baseline
    assert limit.limit == 8
    await _answer(limit, clock, 0.6)  # 3x the baseline, 0.4 s more: slow
    assert limit.limit == 8 * 0.5
    # Quick answers grow it back only while the limit is in full use: one request alone
    # (5 allowed) says nothing about more.
    before = limit.limit
    await _answer(limit, clock, 0.2)
    assert limit.limit == before


async def test_one_decrease_per_round_of_requests() -> None:
    clock = _Clock()
    limit = AdaptiveLimit(4, clock=clock)
    await _answer(limit, clock, 0.2)
    # Four requests sent together, all answered slowly: one decrease, not four.
    slots = [limit.slot("download") for _ in range(4)]
    answers: list[Answer] = [await slot.__aenter__() for slot in slots]
    assert answers[-1].full
    clock.now_s += 1.0
    for slot, answer in zip(slots, answers, strict=True):
        answer.answered()
        await slot.__aexit__(None, None, None)
    assert limit.decreases == 1 and limit.limit == 4 * 0.5


async def test_scheduling_noise_is_not_congestion() -> None:
    clock = _Clock()
    limit = AdaptiveLimit(4, clock=clock)
    await _answer(limit, clock, 0.002)
    await _answer(limit, clock, 0.05)  # 25x a 2 ms baseline, but only 48 ms: noise
    assert limit.decreases == 0


async def test_the_limit_settles_near_the_knee_of_a_loaded_pbx() -> None:
    """Against the simulator's loaded mode (3 requests worked on at once, 300 ms each, the rest
    queued), 24 tasks asking for listings through one client allowed 16 in flight: the limit
    comes down to near the knee and stays there, instead of keeping 16 requests at the PBX.
    Listings, not downloads, keep the test's own CPU small; the bounds are loose on purpose (a
    loaded CI machine stretches answers too): the settled mean within 1.5 .. 2x the knee, and
    never back near the maximum."""
    knee, max_requests = 3, 16
    options = SimulatorOptions(
        password="pw-loaded", seed=3, start=FIRST_DAY, days=1, per_day=10,
        odd_names=False, junk=False, load_knee=knee, load_ms=300,
    )  # fmt: skip
    runner, port = await start_simulator(options)
    cfg = PbxConfig.model_validate(
        {"url": f"http://127.0.0.1:{port}", "username": "admin", "password": options.password,
         "max_concurrent_requests": max_requests}
    )  # fmt: skip
    client = PbxClient(cfg, options.password)
    samples: list[tuple[float, float]] = []
    stop = asyncio.Event()

    async def asker() -> None:
        while not stop.is_set():
            await client.find(date_pattern(FIRST_DAY))

    async def sampler() -> None:
        started = time.monotonic()
        while not stop.is_set():
            samples.append((time.monotonic() - started, client.limit.limit))
            await asyncio.sleep(0.05)

    try:
        tasks = [asyncio.create_task(asker()) for _ in range(24)]
        tasks.append(asyncio.create_task(sampler()))
        await asyncio.sleep(10)
        stop.set()
        await asyncio.gather(*tasks)
        peak_at_pbx = runner.app[LOAD_KEY].peak
    finally:
        await client.close()
        await runner.cleanup()
    settled = [value for at_s, value in samples if at_s >= 5]
    print(f"limit over the last 5 s: mean {statistics.mean(settled):.2f}, "
          f"max {max(settled):.2f}; decreases {client.limit.decreases}; "
          f"peak at the PBX {peak_at_pbx}")  # fmt: skip
    assert client.limit.decreases >= 1
    assert 1.5 <= statistics.mean(settled) <= 2 * knee
    assert max(settled) < max_requests / 2  # never back near the configured maximum


async def test_the_bandwidth_cap_is_never_exceeded(tmp_path: Path) -> None:
    """Downloads at once through a 2,000 kbit/s cap: together they take at least their bytes
    over the cap's rate (less the bucket's quarter second of burst). Only a lower bound on the
    time is asserted, which a loaded machine cannot break; bench/bandwidth.py measures how
    close to the cap a long backfill runs."""
    options = SimulatorOptions(
        password="pw-capped", seed=4, start=FIRST_DAY, days=1, per_day=12, max_duration_s=30,
        odd_names=False, junk=False,
    )  # fmt: skip
    runner, port = await start_simulator(options)
    kbps = 2000
    cfg = PbxConfig.model_validate(
        {"url": f"http://127.0.0.1:{port}", "username": "admin", "password": options.password,
         "max_download_kbps": kbps}
    )  # fmt: skip
    client = PbxClient(cfg, options.password)
    try:
        listing = await client.find(date_pattern(FIRST_DAY))
        recs = []
        for line in listing.lines:  # about three seconds' worth at the cap
            recs.append(parse_path("pbx", line, ZoneInfo(cfg.timezone)))
            if sum(estimated_bytes(r.extension, r.duration_s) for r in recs) > 750_000:
                break
        started = time.monotonic()
        downloads = await asyncio.gather(
            *(client.download(rec, tmp_path / f"{n}.src") for n, rec in enumerate(recs))
        )
        took_s = time.monotonic() - started
    finally:
        await client.close()
        await runner.cleanup()
    total = sum(d.size_bytes for d in downloads) + len(listing.lines) * 80  # + listing, roughly
    rate_bytes_s = kbps * 1000 / 8
    assert total > 2 * rate_bytes_s  # enough bytes that the cap must bite
    assert took_s >= (sum(d.size_bytes for d in downloads) - rate_bytes_s / 4) / rate_bytes_s
    print(f"{total} B in {took_s:.2f} s = {total * 8 / took_s / 1000:.0f} kbit/s (cap {kbps})")


def test_no_cap_reads_full_chunks() -> None:
    assert Bandwidth(None, max_chunk_bytes=262144).chunk_bytes == 262144
    assert Bandwidth(2000, max_chunk_bytes=262144).chunk_bytes == 62500


def test_a_cap_below_the_transfer_floor_is_refused() -> None:
    import pytest
    from pydantic import ValidationError

    with pytest.raises(ValidationError, match="below min_transfer_bytes_per_s"):
        PbxConfig.model_validate(
            {"url": "https://pbx.example", "username": "u", "password": "pw",
             "max_download_kbps": 16, "max_concurrent_requests": 4}
        )  # fmt: skip
