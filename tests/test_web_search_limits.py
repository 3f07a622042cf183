"""One user's slow searches must not stall everyone (issue 19, item 10): a statement time limit
on both backends, and searches limited per user and in total. A search is made slow for real: the
catalogue table is locked by another PostgreSQL session, so every search waits on it."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import psycopg
import pytest
from test_web_attacks import Peer
from web_support import USERS, Site, s3_environment, serving, web_table

from archiver.config import Config, parse_config
from archiver.lab.postgres import LocalPostgres
from archiver.lab.seaweed import SeaweedS3
from archiver.state import BaseState, StatementTimeout, open_state

_ENDLESS_SQLITE = (
    "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c) SELECT count(*) FROM c"
)


def test_a_statement_past_the_limit_is_cancelled(state_cfg: Config) -> None:
    state = open_state(state_cfg, statement_timeout_s=0.5)
    assert isinstance(state, BaseState)
    try:
        endless = _ENDLESS_SQLITE if state.backend == "sqlite" else "SELECT pg_sleep(30)"
        started = time.monotonic()
        with pytest.raises(StatementTimeout):
            state.db.execute(endless)
        # Cancelled at the limit, and not retried as an outage would be.
        assert time.monotonic() - started < 3
        assert state.db.execute("SELECT 1").rows == [(1,)]  # the connection still works
    finally:
        state.close()


@pytest.fixture
def pg_site(
    postgres: LocalPostgres, seaweed: SeaweedS3, tmp_path: Path, bucket: str
) -> Iterator[tuple[Site, str]]:
    url = postgres.create_database()
    web = web_table(tmp_path, statement_timeout_s=1.5, search_max_per_user=2,
                    search_max_concurrent=3)  # fmt: skip
    cfg = parse_config(
        {
            "pbx": {"url": "http://127.0.0.1:9", "username": "u", "password": "p",
                    "timezone": "Europe/Istanbul"},
            "s3": {"bucket": bucket, "endpoint_url": seaweed.endpoint_url, "region": "us-east-1",
                   "addressing_style": "path"},
            "state": {"url": url, "outage_s": 5},
            "web": web,
        },
        "test",
    )  # fmt: skip
    with s3_environment(seaweed), serving(cfg) as site:
        yield site, url


def test_searches_are_limited_per_user_and_cut_at_the_time_limit(
    pg_site: tuple[Site, str],
) -> None:
    site, url = pg_site
    ayse, admin = Peer(site, "127.0.0.150"), Peer(site, "127.0.0.151")
    assert ayse.login("ayse", USERS["ayse"]) == 303
    assert admin.login("admin", USERS["admin"]) == 303
    with psycopg.connect(url) as locker:
        locker.execute("BEGIN")
        locker.execute("LOCK TABLE catalogue IN ACCESS EXCLUSIVE MODE")

        def search(peer: Peer) -> tuple[int, float, dict[str, str]]:
            started = time.monotonic()
            status, _, body = peer.request("GET", "/api/recordings?number=0312", timeout_s=10)
            return status, time.monotonic() - started, json.loads(body)

        with ThreadPoolExecutor(8) as pool:
            mine = [pool.submit(search, ayse) for _ in range(6)]
            time.sleep(0.5)  # ayse's first two are waiting on the lock now
            other = [pool.submit(search, admin) for _ in range(2)]
            answers = [f.result() for f in mine]
            others = [f.result() for f in other]
        locker.execute("ROLLBACK")
    refused = [a for a in answers if a[0] == 429]
    assert len(refused) == 4 and all(s < 1.0 for _, s, _ in refused), answers
    assert all("at most 2 searches" in body["error"] for _, _, body in refused)
    # The two admitted ones, and admin's first, end at the time limit with a reason.
    timed_out = [a for a in answers + others if a[0] == 503 and "longer than" in a[2]["error"]]
    assert len(timed_out) == 3 and all(1.0 < s < 6 for _, s, _ in timed_out), answers + others
    # Admin's second found every search slot taken: refused at once.
    assert sorted(a[0] for a in others) == [503, 503]
    assert any("busy" in body["error"] and s < 1.0 for _, s, body in others), others
    # The lock gone, searches answer again.
    assert ayse.request("GET", "/api/recordings")[0] == 200
