"""The web chaos phase behind `scripts/chaos-web`: one `archiver web` under attack while a
logged-in user keeps playing audio.

Starts SeaweedFS with an archive of `--recordings` objects (512 KiB each) catalogued in a SQLite
state, and `archiver web` as a subprocess with its default limits. Then, at once:

- the player: logged in (form and session cookie, from 127.0.0.2, one kept-alive connection as a
  browser's), asks for a random 64 KiB range of a random recording every 50 ms and times each
  answer, whole;
- 32 zips at once (4 users x 8 zips of 10 recordings, from 127.0.0.3-6), each read slowly
  (64 KiB every 20 ms) to the end;
- 300 slow connections from 10 addresses (127.0.1.1-10): each sends a request line and then
  one header line every 2 s, never finishing;
- a login brute force: 1,000 HTTP Basic attempts from 20 addresses (127.0.2.1-20), 40 at a time,
  against the player's account and 50 other names, wrong passwords; 3 s into it a colleague logs
  in (form) from an address of their own (127.0.0.9), timed.

The addresses are real: every client binds its own loopback source address (the kernel routes all
of 127.0.0.0/8 to lo), so the server sees 20 attackers as it would on a network. X-Forwarded-For
is not used: the server ignores it unless its peer is a configured trusted proxy.

When the brute force and the zips are done it prints, with the load average:

    web_chaos player_requests N player_worst_ms W (goal < 1000) player_p95_ms P player_errors 0
    zips 32: admitted A (complete C, broken 0), refused 429 R1, 503 R2
    slow_connections 300: closed_by_server N within_s S, refused_503 M
    brute_force 1000: reached_hash_check H (max per user and address X, limit 5), answers {...}
    colleague_login_during_brute_force status 303 seconds S
    descriptors peak F (LimitNOFILE 2048)
    sigterm stopped_in_s T (goal < 5)

and exits 1 if the worst latency is 1 s or more, a pair exceeded the limit, a zip broke, the
player saw an error, the colleague could not log in or the server took 5 s or more to stop.
Logs go to `<data>/web.log`.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import os
import random
import resource
import signal
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from zoneinfo import ZoneInfo

import aiohttp

from archiver.lab.seaweed import SeaweedS3
from archiver.names import parse_name
from archiver.state import Catalogue, catalogue_entry, open_database
from archiver.web import set_password

_TZ = ZoneInfo("Europe/Istanbul")
_OBJECT_BYTES = 512 * 1024
_PLAYER = ("player", "Player-Listens-2026")
_ZIP_USERS = [(f"zipper{n}", f"Zipper-Password-{n}-2026") for n in range(4)]
_LIMIT_PER_PAIR = 5  # [web] login_max_failures, the default


def _log(message: str) -> None:
    print(f"chaos-web: {message}", file=sys.stderr, flush=True)


@dataclass
class Results:
    player_ms: list[float] = field(default_factory=list)
    player_errors: Counter[str] = field(default_factory=Counter)
    zip_status: Counter[int] = field(default_factory=Counter)
    zip_complete: int = 0
    zip_broken: int = 0
    slow_closed_s: list[float] = field(default_factory=list)
    slow_refused: int = 0
    brute_status: Counter[int] = field(default_factory=Counter)
    colleague_login_s: float | None = None
    colleague_status: int = 0
    fds_peak: int = 0


def _archive(seaweed: SeaweedS3, state: Path, count: int) -> tuple[str, list[str]]:
    bucket = f"chaos-web-{uuid.uuid4().hex[:8]}"
    seaweed.create_bucket(bucket)
    client = seaweed.client()
    db = open_database(state)
    keys = []
    try:
        catalogue = Catalogue(db)
        for n in range(count):
            when = f"{10 + n // 60:02d}{n % 60:02d}00"
            name = f"20261201-{when}-100-90532512{n:04d}-1764576000.{n}-60.gsm"
            rec = parse_name("pbx", "trunk-sip-1", name, _TZ)
            key = f"recordings/pbx/2026/12/01/{rec.key.replace('/', '_')}.mp3"
            client.put_object(Bucket=bucket, Key=key, Body=os.urandom(_OBJECT_BYTES))
            catalogue.upsert(catalogue_entry(rec, object_key=key, size_bytes=_OBJECT_BYTES))
            keys.append(key)
    finally:
        db.close()
    return bucket, keys


def _config(data: Path, seaweed: SeaweedS3, bucket: str, port: int) -> Path:
    users = data / "web-users"
    for name, password in [_PLAYER, *_ZIP_USERS]:
        set_password(users, name, password)  # as `archiver web passwd` does: bcrypt cost 12
    config = data / "archiver.toml"
    config.write_text(
        '[[pbx]]\nurl = "http://127.0.0.1:9"\nusername = "u"\npassword_env = "UNUSED"\n'
        'timezone = "Europe/Istanbul"\n'
        f'[s3]\nbucket = "{bucket}"\nendpoint_url = "{seaweed.endpoint_url}"\n'
        'region = "us-east-1"\naddressing_style = "path"\n'
        f'[state]\npath = "{data / "ledger.sqlite3"}"\n'
        f'[web]\nlisten = "127.0.0.1:{port}"\nusers_file = "{users}"\n',
        encoding="utf-8",
    )
    return config


def _session(source: str, *, keep_alive: bool = False) -> aiohttp.ClientSession:
    """A client from `source`; `keep_alive` reuses its connection as a browser does."""
    connector = aiohttp.TCPConnector(local_addr=(source, 0), limit=0, force_close=not keep_alive)
    return aiohttp.ClientSession(
        connector=connector,
        timeout=aiohttp.ClientTimeout(total=120),
        cookie_jar=aiohttp.CookieJar(unsafe=True),  # cookies for 127.0.0.1 (an IP address)
    )


async def _login(session: aiohttp.ClientSession, base: str, name: str, password: str) -> None:
    async with session.get(f"{base}/login") as answer:
        await answer.read()
    csrf = next(c.value for c in session.cookie_jar if c.key == "archiver_csrf")
    form = {"username": name, "password": password, "csrf_token": csrf}
    async with session.post(f"{base}/login", data=form, allow_redirects=False) as answer:
        if answer.status != 303:
            raise RuntimeError(f"{name} could not log in: {answer.status}")


async def _csrf(session: aiohttp.ClientSession, base: str) -> str:
    async with session.get(f"{base}/") as answer:
        page = await answer.text()
    marker = 'name="csrf_token" value="'
    start = page.index(marker) + len(marker)
    return page[start : page.index('"', start)]


async def _player(base: str, keys: list[str], results: Results, stop: asyncio.Event) -> None:
    async with _session("127.0.0.2", keep_alive=True) as session:
        await _login(session, base, *_PLAYER)
        while not stop.is_set():
            key = random.choice(keys)  # noqa: S311 - a load pattern, not crypto
            first = random.randrange(0, _OBJECT_BYTES - 65536)  # noqa: S311
            started = time.monotonic()
            try:
                headers = {"Range": f"bytes={first}-{first + 65535}"}
                async with session.get(f"{base}/audio/{key}", headers=headers) as answer:
                    body = await answer.read()
                if answer.status != 206 or len(body) != 65536:
                    results.player_errors[f"status {answer.status}"] += 1
            except (aiohttp.ClientError, TimeoutError) as error:
                results.player_errors[type(error).__name__] += 1
            results.player_ms.append((time.monotonic() - started) * 1000)
            await asyncio.sleep(0.05)


async def _one_zip(
    session: aiohttp.ClientSession, base: str, keys: list[str], csrf: str, results: Results
) -> None:
    form = [("csrf_token", csrf), *(("key", key) for key in keys)]
    try:
        async with session.post(f"{base}/zip", data=form) as answer:
            results.zip_status[answer.status] += 1
            if answer.status != 200:
                await answer.read()
                return
            received = 0
            while chunk := await answer.content.read(65536):
                received += len(chunk)
                await asyncio.sleep(0.02)  # a slow line
            if received >= len(keys) * _OBJECT_BYTES:
                results.zip_complete += 1
            else:
                results.zip_broken += 1
    except (aiohttp.ClientError, TimeoutError):
        results.zip_broken += 1


async def _zippers(base: str) -> list[tuple[aiohttp.ClientSession, str]]:
    """The zip users, logged in (before the storm: the zips are the load, not their logins)."""
    logged_in = []
    for n, (name, password) in enumerate(_ZIP_USERS):
        session = _session(f"127.0.0.{3 + n}")
        await _login(session, base, name, password)
        logged_in.append((session, await _csrf(session, base)))
    return logged_in


async def _zips(
    zippers: list[tuple[aiohttp.ClientSession, str]], base: str, keys: list[str], results: Results
) -> None:
    try:
        jobs = [
            _one_zip(session, base, random.sample(keys, 10), token, results)
            for session, token in zippers
            for _ in range(8)
        ]
        await asyncio.gather(*jobs)
    finally:
        for session, _ in zippers:
            await session.close()


async def _colleague(base: str, results: Results) -> None:
    """A colleague logs in from an address of their own in the middle of the brute force."""
    await asyncio.sleep(3)
    name, password = _ZIP_USERS[0]
    async with _session("127.0.0.9") as session:
        started = time.monotonic()
        async with session.get(f"{base}/login") as answer:
            await answer.read()
        csrf = next(c.value for c in session.cookie_jar if c.key == "archiver_csrf")
        form = {"username": name, "password": password, "csrf_token": csrf}
        async with session.post(f"{base}/login", data=form, allow_redirects=False) as answer:
            results.colleague_status = answer.status
        results.colleague_login_s = time.monotonic() - started


async def _slow_connection(port: int, source: str, results: Results, stop: asyncio.Event) -> None:
    started = time.monotonic()
    try:
        reader, writer = await asyncio.open_connection("127.0.0.1", port, local_addr=(source, 0))
    except OSError:
        results.slow_refused += 1
        return
    try:
        writer.write(b"GET /login HTTP/1.1\r\nHost: x\r\n")
        while not stop.is_set():
            try:
                data = await asyncio.wait_for(reader.read(4096), timeout=2.0)
            except TimeoutError:
                writer.write(b"X-Drip: 1\r\n")  # one header line every 2 s
                await writer.drain()
                continue
            if data.startswith(b"HTTP/1.1 503"):
                results.slow_refused += 1
                return
            if not data:
                results.slow_closed_s.append(time.monotonic() - started)
                return
    except (ConnectionError, OSError):
        results.slow_closed_s.append(time.monotonic() - started)
    finally:
        writer.close()


async def _brute_force(base: str, attempts: int, results: Results) -> None:
    names = [_PLAYER[0], *(f"guess{n}" for n in range(50))]
    sources = [f"127.0.2.{n}" for n in range(1, 21)]
    sessions = {source: _session(source) for source in sources}
    gate = asyncio.Semaphore(40)

    async def attempt(n: int) -> None:
        source = sources[n % len(sources)]
        name = names[(n // len(sources)) % len(names)] if n % 3 else _PLAYER[0]
        token = base64.b64encode(f"{name}:wrong-{n}".encode()).decode()
        async with gate:
            try:
                async with sessions[source].get(
                    f"{base}/api/recordings", headers={"Authorization": f"Basic {token}"}
                ) as answer:
                    await answer.read()
                    results.brute_status[answer.status] += 1
            except (aiohttp.ClientError, TimeoutError):
                results.brute_status[0] += 1

    try:
        await asyncio.gather(*(attempt(n) for n in range(attempts)))
    finally:
        for session in sessions.values():
            await session.close()


async def _watch_descriptors(pid: int, results: Results, stop: asyncio.Event) -> None:
    folder = Path(f"/proc/{pid}/fd")
    while not stop.is_set():
        try:
            count = await asyncio.to_thread(lambda: sum(1 for _ in folder.iterdir()))
            results.fds_peak = max(results.fds_peak, count)
        except OSError:
            return
        await asyncio.sleep(0.25)


async def _attack(
    base: str, port: int, pid: int, keys: list[str], results: Results, slow_connections: int
) -> None:
    stop = asyncio.Event()
    background = [
        asyncio.create_task(_player(base, keys, results, stop)),
        asyncio.create_task(_watch_descriptors(pid, results, stop)),
    ]
    zippers = await _zippers(base)
    await asyncio.sleep(2)  # the player's baseline before the storm
    sources = max(10, -(-slow_connections // 50))  # at most 50 per address (the cap is 64)
    slow = [
        asyncio.create_task(_slow_connection(port, f"127.0.1.{1 + n % sources}", results, stop))
        for n in range(slow_connections)
    ]
    _log(f"{slow_connections} slow connections opened; 32 zips and 1,000 logins under way")
    await asyncio.gather(
        _zips(zippers, base, keys, results),
        _brute_force(base, 1000, results),
        _colleague(base, results),
    )
    await asyncio.sleep(1)
    stop.set()
    await asyncio.gather(*background, *slow, return_exceptions=True)


def _hash_checks(state: Path) -> Counter[tuple[str, str]]:
    """Login attempts that reached a password check, per (user, address), from the access log
    (a throttled attempt is logged `throttled`; one that was checked, `ok` or `refused`)."""
    connection = sqlite3.connect(f"file:{state}?mode=ro", uri=True)
    try:
        rows = connection.execute(
            "SELECT username, source FROM access_log WHERE action = 'login'"
            " AND outcome IN ('ok', 'refused') AND source LIKE '127.0.2.%'"
        ).fetchall()
    finally:
        connection.close()
    return Counter((str(user), str(source)) for user, source in rows)


def _percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(share * len(ordered)))] if ordered else 0.0


def _report(
    results: Results, checks: Counter[tuple[str, str]], stopped_s: float, slow_connections: int
) -> bool:
    load = " ".join(f"{value:.2f}" for value in os.getloadavg())
    worst = max(results.player_ms, default=0.0)
    pair_max = max(checks.values(), default=0)
    admitted = results.zip_status[200]
    print(f"load_average {load} (2 cores shared with other work)")
    print(f"web_chaos player_requests {len(results.player_ms)} player_worst_ms {worst:.0f}"
          f" (goal < 1000) player_p50_ms {statistics.median(results.player_ms or [0]):.0f}"
          f" player_p95_ms {_percentile(results.player_ms, 0.95):.0f}"
          f" player_errors {sum(results.player_errors.values())}"
          f" {dict(results.player_errors)}")  # fmt: skip
    print(f"zips 32: admitted {admitted} (complete {results.zip_complete}, broken"
          f" {results.zip_broken}), refused 429 {results.zip_status[429]},"
          f" 503 {results.zip_status[503]}")  # fmt: skip
    closed = results.slow_closed_s
    print(f"slow_connections {slow_connections}: closed_by_server {len(closed)} within_s"
          f" {max(closed, default=0):.1f}, refused_503 {results.slow_refused}")  # fmt: skip
    print(f"brute_force 1000: reached_hash_check {sum(checks.values())} (max per user and"
          f" address {pair_max}, limit {_LIMIT_PER_PAIR}),"
          f" answers {dict(results.brute_status)}")  # fmt: skip
    shown = "none" if results.colleague_login_s is None else f"{results.colleague_login_s:.2f}"
    print(f"colleague_login_during_brute_force status {results.colleague_status} seconds {shown}")
    print(f"descriptors peak {results.fds_peak} (LimitNOFILE 2048)")
    print(f"sigterm stopped_in_s {stopped_s:.2f} (goal < 5)")
    return (
        worst < 1000
        and pair_max <= _LIMIT_PER_PAIR
        and results.zip_broken == 0
        and not results.player_errors
        and results.colleague_status == 303
        and stopped_s < 5
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="scripts/chaos-web", description=__doc__.split("\n")[0])
    parser.add_argument("--recordings", type=int, default=40)
    parser.add_argument("--data", type=Path, help="keep logs and the state here")
    parser.add_argument("--seed", type=int, default=19)
    parser.add_argument("--slow", type=int, default=300, help="slow connections (default 300)")
    args = parser.parse_args(argv)
    # Our own side holds every client socket too.
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, min(hard, args.slow + 1024)), hard))
    random.seed(args.seed)
    data = args.data or Path(tempfile.mkdtemp(prefix="chaos-web-"))
    data.mkdir(parents=True, exist_ok=True)
    state = data / "ledger.sqlite3"
    with SeaweedS3(data_dir=data / "s3") as seaweed:
        bucket, keys = _archive(seaweed, state, args.recordings)
        port = _free_port()
        config = _config(data, seaweed, bucket, port)
        env = {**os.environ, **seaweed.aws_env()}
        env.pop("AWS_ENDPOINT_URL_S3")
        log = (data / "web.log").open("w")
        process = subprocess.Popen(
            [sys.executable, "-m", "archiver", "web", "--config", str(config)],
            env=env, stdout=log, stderr=subprocess.STDOUT,
        )  # fmt: skip
        try:
            base = f"http://127.0.0.1:{port}"
            _wait_listening(port)
            _log(f"archiver web (pid {process.pid}) on {base}, {len(keys)} recordings")
            results = Results()
            asyncio.run(_attack(base, port, process.pid, keys, results, args.slow))
            started = time.monotonic()
            process.send_signal(signal.SIGTERM)
            process.wait(timeout=30)
            stopped_s = time.monotonic() - started
        finally:
            if process.poll() is None:
                process.kill()
                process.wait()
    ok = _report(results, _hash_checks(state), stopped_s, args.slow)
    _log(f"logs in {data}")
    return 0 if ok else 1


def _free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _wait_listening(port: int, timeout_s: float = 30.0) -> None:
    import socket

    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1):
                return
        except OSError:
            time.sleep(0.1)
    raise RuntimeError(f"archiver web did not listen on {port}")


if __name__ == "__main__":
    sys.exit(main())
