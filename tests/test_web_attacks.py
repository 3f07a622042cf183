"""`archiver web` under attack (issue 19): each test reproduces one finding of the attack review
over real HTTP against a real server, real bcrypt and a real S3, from distinct loopback source
addresses (127.0.0.x) where the finding is about addresses."""

from __future__ import annotations

import asyncio
import base64
import http.client
import io
import re
import socket
import time
import zipfile
from collections.abc import Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path
from urllib.parse import quote, urlencode, urlsplit

import bcrypt
import pytest
import structlog
from web_support import USERS, Site, archive_day, s3_environment, serving, users_file, web_table

from archiver.config import Config
from archiver.lab.seaweed import SeaweedS3
from archiver.state.access import AccessEvent, AccessLog
from archiver.state.migrate import open_database
from archiver.web.users import Users


@pytest.fixture(scope="module")
def archived(seaweed: SeaweedS3, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Config]:
    tmp = tmp_path_factory.mktemp("web-attacks")
    with s3_environment(seaweed):
        yield archive_day(seaweed, tmp, web_table(tmp))


class Peer:
    """An HTTP client from one loopback source address, with its own cookies, that never
    follows redirects."""

    def __init__(self, site: Site, source: str = "127.0.0.1") -> None:
        parts = urlsplit(site.url)
        self.host, self.port = parts.hostname or "127.0.0.1", parts.port or 80
        self.source = source
        self.cookies: dict[str, str] = {}

    def request(
        self,
        method: str,
        path: str,
        *,
        form: Mapping[str, str | list[str]] | None = None,
        headers: Mapping[str, str] | None = None,
        basic: tuple[str, str] | None = None,
        timeout_s: float = 30.0,
    ) -> tuple[int, dict[str, str], bytes]:
        sent = dict(headers or {})
        body = None
        if form is not None:
            body = urlencode(form, doseq=True).encode()
            sent["Content-Type"] = "application/x-www-form-urlencoded"
        if self.cookies:
            sent["Cookie"] = "; ".join(f"{k}={v}" for k, v in self.cookies.items())
        if basic is not None:
            token = base64.b64encode(f"{basic[0]}:{basic[1]}".encode()).decode()
            sent["Authorization"] = f"Basic {token}"
        conn = http.client.HTTPConnection(
            self.host, self.port, timeout=timeout_s, source_address=(self.source, 0)
        )
        try:
            conn.request(method, path, body=body, headers=sent)
            response = conn.getresponse()
            data = response.read()
            for name, value in response.getheaders():
                if name.lower() == "set-cookie":
                    cookie, _, _ = value.partition(";")
                    key, _, val = cookie.partition("=")
                    if val in ("", '""'):
                        self.cookies.pop(key.strip(), None)
                    else:
                        self.cookies[key.strip()] = val
            return response.status, dict(response.getheaders()), data
        finally:
            conn.close()

    def login(self, name: str, password: str, *, next_path: str | None = None) -> int:
        return self.login_answer(name, password, next_path=next_path)[0]

    def login_answer(
        self, name: str, password: str, *, next_path: str | None = None
    ) -> tuple[int, dict[str, str], bytes]:
        self.request("GET", "/login")
        form = {"username": name, "password": password,
                "csrf_token": self.cookies.get("archiver_csrf", "")}  # fmt: skip
        if next_path is not None:
            form["next"] = next_path
        return self.request("POST", "/login", form=form)


def _access_events(cfg: Config, since: datetime) -> list[AccessEvent]:
    db = open_database(cfg.state.path)
    try:
        return AccessLog(db).events(since=since)
    finally:
        db.close()


# --- 6. Login CSRF -----------------------------------------------------------------------------


def test_login_without_the_csrf_cookie_is_refused(site: Site) -> None:
    """A page elsewhere posts the attacker's credentials with an empty token and no cookie: that
    must not log the victim's browser in."""
    stranger = Peer(site, "127.0.0.61")
    form = {"username": "ayse", "password": USERS["ayse"], "csrf_token": ""}
    status, headers, _ = stranger.request("POST", "/login", form=form)
    assert status == 403, headers
    assert "archiver_session" not in stranger.cookies
    # And the empty cookie with the empty token either.
    stranger.cookies["archiver_csrf"] = '""'
    assert stranger.request("POST", "/login", form=form)[0] == 403


# --- 5. Open redirect --------------------------------------------------------------------------

_HOSTILE_NEXT = [
    "/\t/evil.example/x",
    "/\n/evil.example/x",
    "/\r\n/evil.example/x",
    "/\\evil.example/x",
    "//evil.example/x",
    "/\\\\evil.example",
    "https://evil.example/",
]


@pytest.mark.parametrize("target", _HOSTILE_NEXT)
def test_no_redirect_leaves_the_site(site: Site, target: str) -> None:
    peer = Peer(site, "127.0.0.62")
    # Through the login page's `next` (as the form carries it) ...
    status, headers, _ = peer.request("GET", "/login?next=" + quote(target, safe=""))
    assert status == 200
    status, headers, _ = peer.login_answer("ayse", USERS["ayse"], next_path=target)
    assert status == 303 and _local(headers["Location"]), headers["Location"]
    # ... when already logged in, and through the language switch.
    for path in ("/login?next=", "/lang/tr?next=", "/lang/en?next="):
        status, headers, _ = peer.request("GET", path + quote(target, safe=""))
        assert status == 303 and _local(headers["Location"]), (path, headers["Location"])


def test_local_targets_still_work(site: Site) -> None:
    peer = Peer(site, "127.0.0.63")
    status, headers, _ = peer.login_answer("ayse", USERS["ayse"], next_path="/?number=0312 332")
    assert status == 303 and headers["Location"] in ("/?number=0312+332", "/?number=0312%20332")


def _local(location: str) -> bool:
    # What a browser does with it: drop tabs and newlines, read `\` as `/`.
    cleaned = re.sub(r"[\t\n\r]", "", location).replace("\\", "/")
    return cleaned.startswith("/") and not cleaned.startswith("//")


# --- 2. Throttle races -------------------------------------------------------------------------


def test_concurrent_guesses_reach_at_most_the_limit_of_hash_checks(
    site: Site, archived: Config
) -> None:
    since = datetime.now(UTC)
    peer = Peer(site, "127.0.0.64")
    passwords = [f"guess-{n}" for n in range(40)] + [USERS["ayse"]]

    def attempt(password: str) -> int:
        return peer.request("GET", "/api/recordings", basic=("ayse", password))[0]

    with ThreadPoolExecutor(len(passwords)) as pool:
        statuses = list(pool.map(attempt, passwords))
    events = _access_events(archived, since)
    checked = [e for e in events if e.action == "login" and e.source == "127.0.0.64"
               and e.outcome != "throttled"]  # fmt: skip
    limit = archived.web.login_max_failures
    assert len(checked) <= limit, statuses
    # The rest were refused unchecked: 429 (the pair's limit) or 503 (the address's share of
    # the hash queue is full), each with Retry-After.
    assert statuses.count(429) + statuses.count(503) >= len(passwords) - limit
    assert set(statuses) <= {200, 401, 429, 503}


def test_unknown_names_from_one_address_are_throttled(site: Site, archived: Config) -> None:
    peer = Peer(site, "127.0.0.65")

    def attempt(n: int) -> int:
        return peer.request("GET", "/api/recordings", basic=(f"nobody{n}", "x"))[0]

    with ThreadPoolExecutor(24) as pool:
        statuses = list(pool.map(attempt, range(60)))
    per_address = archived.web.login_max_failures_per_address
    assert statuses.count(401) <= per_address
    assert statuses.count(429) + statuses.count(503) >= 60 - per_address


# --- 3. Nobody locks a user out ----------------------------------------------------------------


def test_a_stranger_cannot_lock_a_user_out(site: Site) -> None:
    limit = 5
    for n in range(limit):
        assert Peer(site, f"127.0.0.{70 + n}").login("admin", "wrong") == 401
    # The same user, right password, from a new address: in at once.
    assert Peer(site, "127.0.0.79").login("admin", USERS["admin"]) == 303
    # The guesser's own pair is throttled at the limit.
    guesser = Peer(site, "127.0.0.80")
    assert [guesser.login("admin", "wrong") for _ in range(limit)] == [401] * limit
    assert guesser.login("admin", USERS["admin"]) == 429


def test_one_colleagues_typos_do_not_lock_the_office_out(site: Site) -> None:
    office = "127.0.0.81"  # one NAT address for everyone
    clumsy = Peer(site, office)
    assert [clumsy.login("admin", "typo") for _ in range(5)] == [401] * 5
    assert clumsy.login("admin", "typo") == 429
    assert Peer(site, office).login("ayse", USERS["ayse"]) == 303


# --- 7. Same time whatever the name ------------------------------------------------------------


def test_cheap_hashes_are_refused_at_load_with_how_to_rehash(tmp_path: Path) -> None:
    path = tmp_path / "users"
    cheap = bcrypt.hashpw(b"pw", bcrypt.gensalt(5)).decode()
    fine = bcrypt.hashpw(b"pw", bcrypt.gensalt(10)).decode()
    path.write_text(f"cheap:{cheap}\nfine:{fine}\n", encoding="utf-8")
    with structlog.testing.capture_logs() as logs:
        names = Users(path).names()
    assert names == ["fine"]
    (refused,) = [e for e in logs if e["event"] == "web_user_line_refused"]
    assert refused["line"] == 1 and "cost 5" in refused["reason"]
    assert "archiver web passwd cheap" in refused["reason"]


def test_a_check_takes_as_long_whatever_the_name(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Every check costs one bcrypt check at the file's highest cost: an unknown name is checked
    against a hash of that cost, a cheaper user's check is padded by (2^(difference) - 1) times
    what it took. Asserted on the work done (the real bcrypt, recorded), not on a stopwatch: a
    wall-clock ratio on a shared machine is a benchmark's business."""
    path = tmp_path / "users"
    path.write_text(
        f"low:{bcrypt.hashpw(b'low-pw', bcrypt.gensalt(10)).decode()}\n"
        f"high:{bcrypt.hashpw(b'high-pw', bcrypt.gensalt(12)).decode()}\n",
        encoding="utf-8",
    )
    users = Users(path)
    costs: list[int] = []
    real_checkpw = bcrypt.checkpw

    def recording_checkpw(password: bytes, hashed: bytes) -> bool:
        costs.append(int(hashed[4:6]))
        return real_checkpw(password, hashed)

    monkeypatch.setattr(bcrypt, "checkpw", recording_checkpw)
    checks = {name: users.verify(name, "wrong") for name in ("low", "high", "nobody")}
    assert costs == [10, 12, 12]  # one check each; the unknown name at the highest cost
    assert not any(check.accepted for check in checks.values())
    assert checks["high"].pad_s == 0 and checks["nobody"].pad_s == 0
    assert checks["low"].pad_s > 0  # cost 10 of 12: padded to about four times its check
    assert users.verify("low", "low-pw").accepted and users.verify("high", "high-pw").accepted


# --- 9. A removed user's session ends ----------------------------------------------------------


@pytest.fixture
def own_users_site(archived: Config, seaweed: SeaweedS3, tmp_path: Path) -> Iterator[Site]:
    path = users_file(tmp_path / "users", USERS)
    cfg = archived.model_copy(update={"web": archived.web.model_copy(update={"users_file": path})})
    with s3_environment(seaweed), serving(cfg) as running_site:
        yield running_site


@pytest.mark.parametrize("change", ["removed", "password changed"])
def test_a_session_ends_when_its_credential_does(own_users_site: Site, change: str) -> None:
    site = own_users_site
    key = site.entries()[0].object_key
    peer = Peer(site, "127.0.0.90")
    assert peer.login("ayse", USERS["ayse"]) == 303
    audio = "/audio/" + quote(key, safe="/")
    assert peer.request("GET", audio, headers={"Range": "bytes=0-9"})[0] == 206
    remaining = {"admin": USERS["admin"]}
    if change == "password changed":
        remaining["ayse"] = "A-New-Password-2026"
    users_file(site.cfg.web.users_file, remaining)
    status, headers, _ = peer.request("GET", audio, headers={"Range": "bytes=0-9"})
    assert status in (303, 401), (status, headers)
    assert peer.request("GET", "/")[0] == 303


# --- 8. The access log says what was served ----------------------------------------------------


def test_the_access_log_records_what_was_served(site: Site, archived: Config) -> None:
    entry = site.entries()[2]
    size = entry.size_bytes
    assert size is not None
    since = datetime.now(UTC)
    peer = Peer(site, "127.0.0.91")
    assert peer.login("ayse", USERS["ayse"]) == 303
    audio = "/audio/" + quote(entry.object_key, safe="/")
    # Several ranges: answered with the whole file, so logged as the whole file.
    status, _, body = peer.request("GET", audio, headers={"Range": "bytes=0-0,0-0,0-0,0-0"})
    assert status == 200 and len(body) == size
    status, _, body = peer.request("GET", audio, headers={"Range": "bytes=10-19"})
    assert status == 206 and len(body) == 10
    plays = [e for e in _access_events(archived, since) if e.action == "play"]
    assert [(e.byte_range, e.detail) for e in plays] == [
        (None, f"200, {size} bytes"),
        (f"bytes 10-19/{size}", "206, 10 bytes"),
    ]


# --- 1. Zips never hang the server -------------------------------------------------------------


class _SmallWindow(http.client.HTTPConnection):
    """A connection whose receive buffer is set small before it connects, so that a reader
    that stops reading holds the sender back at once (the kernel's autotuned loopback window
    could otherwise take a whole small zip, and its slot would be free again)."""

    def connect(self) -> None:
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        sock.settimeout(self.timeout)
        source: tuple[str, int] | None = getattr(self, "source_address", None)
        if source is not None:
            sock.bind(source)
        sock.connect((self.host, self.port))
        self.sock = sock


class Zipper:
    """A zip download that reads its answer's status line and then nothing: the server's
    writer fills what it may and must wait, as for a client on a slow line."""

    def __init__(self, peer: Peer, keys: list[str], csrf: str) -> None:
        self.conn = _SmallWindow(peer.host, peer.port, timeout=30, source_address=(peer.source, 0))
        body = urlencode({"key": keys, "csrf_token": csrf}, doseq=True)
        cookie = "; ".join(f"{k}={v}" for k, v in peer.cookies.items())
        self.conn.request("POST", "/zip", body=body, headers={
            "Content-Type": "application/x-www-form-urlencoded", "Cookie": cookie})  # fmt: skip
        self.response = self.conn.getresponse()

    def finish(self) -> bytes:
        try:
            return self.response.read()
        finally:
            self.conn.close()


def _csrf(peer: Peer) -> str:
    _, _, page = peer.request("GET", "/")
    found = re.search(rb'name="csrf_token" value="([^"]+)"', page)
    assert found is not None
    return found.group(1).decode()


@pytest.fixture
def many_zips_site(archived: Config, seaweed: SeaweedS3) -> Iterator[Site]:
    web = archived.web.model_copy(update={"zip_max_per_user": 32, "zip_max_concurrent": 32})
    with s3_environment(seaweed), serving(archived.model_copy(update={"web": web})) as running:
        yield running


def test_many_slow_zips_never_block_other_requests(many_zips_site: Site) -> None:
    """24 zips at once by one user, none read: audio and logins still answer at once, and every
    zip completes when read (before: 16 hung the server for good)."""
    site = many_zips_site
    keys = [e.object_key for e in site.entries()]
    peer = Peer(site, "127.0.0.92")
    assert peer.login("ayse", USERS["ayse"]) == 303
    csrf = _csrf(peer)
    with ThreadPoolExecutor(24) as pool:
        zips = list(pool.map(lambda _: Zipper(peer, keys, csrf), range(24)))
    try:
        assert [z.response.status for z in zips] == [200] * 24
        listener = Peer(site, "127.0.0.93")
        audio = "/audio/" + quote(keys[0], safe="/")
        started = time.monotonic()
        status, _, _ = listener.request(
            "GET", audio, basic=("admin", USERS["admin"]), headers={"Range": "bytes=0-1023"},
            timeout_s=10,
        )  # fmt: skip
        assert status == 206 and time.monotonic() - started < 5
        assert Peer(site, "127.0.0.94").login("admin", USERS["admin"]) == 303
    except BaseException:
        for zipper in zips:
            zipper.conn.close()  # a hung server would never finish them
        raise
    bodies = [z.finish() for z in zips]
    for body in bodies:
        with zipfile.ZipFile(io.BytesIO(body)) as archive:
            assert archive.testzip() is None and len(archive.namelist()) == len(keys)


@pytest.fixture(scope="module")
def archived_many(seaweed: SeaweedS3, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Config]:
    """A day of 60 calls (about 7 MB of MP3): a zip of them is larger than what the kernel's
    socket buffers and the server's write buffer can take from a client that reads nothing, so a
    held zip really stays in progress (a zip of the 6-call day could be absorbed whole, and its
    slot came free under the test)."""
    tmp = tmp_path_factory.mktemp("web-attacks-many")
    with s3_environment(seaweed):
        yield archive_day(seaweed, tmp, web_table(tmp), per_day=60)


@pytest.fixture
def few_zips_site(archived_many: Config, seaweed: SeaweedS3) -> Iterator[Site]:
    archived = archived_many
    web = archived.web.model_copy(update={"zip_max_per_user": 2, "zip_max_concurrent": 3})
    with s3_environment(seaweed), serving(archived.model_copy(update={"web": web})) as running:
        yield running


def test_zips_beyond_the_limits_are_refused_with_retry_after(few_zips_site: Site) -> None:
    site = few_zips_site
    keys = [e.object_key for e in site.entries()]
    ayse, admin = Peer(site, "127.0.0.95"), Peer(site, "127.0.0.96")
    assert ayse.login("ayse", USERS["ayse"]) == 303
    assert admin.login("admin", USERS["admin"]) == 303
    ayse_csrf, admin_csrf = _csrf(ayse), _csrf(admin)
    held = [Zipper(ayse, keys, ayse_csrf), Zipper(ayse, keys, ayse_csrf)]
    try:
        third = Zipper(ayse, keys, ayse_csrf)
        assert third.response.status == 429 and int(third.response.headers["Retry-After"]) > 0
        third.finish()
        held.append(Zipper(admin, keys, admin_csrf))  # the third zip in total
        fourth = Zipper(admin, keys, admin_csrf)
        assert fourth.response.status == 503 and int(fourth.response.headers["Retry-After"]) > 0
        fourth.finish()
        assert [z.response.status for z in held] == [200, 200, 200]
    finally:
        for zipper in held:
            zipper.finish()
    # Slots are given back: a new zip is admitted.
    again = Zipper(ayse, keys, ayse_csrf)
    assert again.response.status == 200 and again.finish()[:2] == b"PK"


# --- 2/3. Hash checks take turns by address ----------------------------------------------------


def test_hash_checks_are_served_round_robin_by_address() -> None:
    """Attackers queue many checks from a few addresses; a colleague's check from a new address
    waits for at most one check per address ahead of it, not for the whole queue."""
    from archiver.web.hash_queue import FairQueue

    order: list[str] = []

    async def run() -> None:
        queue = FairQueue(slots=1, per_source=10)

        async def check(source: str) -> None:
            async with queue.slot(source):
                order.append(source)
                await asyncio.sleep(0.001)

        attackers = [check(f"10.0.0.{n % 3}") for n in range(30)]
        tasks = [asyncio.ensure_future(job) for job in attackers]
        await asyncio.sleep(0)
        assert queue.full("10.0.0.0") and not queue.full("192.0.2.7")
        tasks.append(asyncio.ensure_future(check("192.0.2.7")))
        await asyncio.gather(*tasks)

    asyncio.run(run())
    assert len(order) == 31 and order.index("192.0.2.7") <= 4, order
