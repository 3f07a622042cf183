"""`archiver web` over HTTP, without a browser: the guard on every path, CSRF, throttling, the
JSON API, audio with Range, the zip, the access log and `archiver audit`. Recordings are archived
for real (simulator → ffmpeg → SeaweedFS) once per module."""

from __future__ import annotations

import io
import json
import os
import re
import signal
import ssl
import subprocess
import sys
import time
import urllib.error
import urllib.request
import zipfile
from collections.abc import Iterator
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path
from urllib.parse import quote

import pytest
from cryptography.hazmat.primitives.asymmetric import ec
from support import free_port, wait_for
from test_tls import _issue, _write
from web_support import USERS, Client, Site, archive_day, s3_environment, serving, web_table

from archiver.config import Config
from archiver.lab.seaweed import SeaweedS3
from archiver.state.access import AccessLog
from archiver.state.catalogue import SearchQuery
from archiver.state.migrate import open_database


@pytest.fixture(scope="module")
def archived(seaweed: SeaweedS3, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Config]:
    tmp = tmp_path_factory.mktemp("web")
    with s3_environment(seaweed):
        yield archive_day(seaweed, tmp, web_table(tmp))


@pytest.fixture
def strict_site(archived: Config, seaweed: SeaweedS3) -> Iterator[Site]:
    """A second server over the same archive with a low login limit (its own throttle)."""
    cfg = archived.model_copy(
        update={"web": archived.web.model_copy(update={"login_max_failures": 3})}
    )
    with s3_environment(seaweed), serving(cfg) as running_site:
        yield running_site


def _logged_in(site: Site, user: str = "ayse") -> Client:
    client = Client(site.url)
    assert client.login(user, USERS[user]) == 303
    return client


def _audio_path(key: str) -> str:
    return "/audio/" + quote(key, safe="/")


def test_every_path_needs_a_login(site: Site) -> None:
    key = site.entries()[0].object_key
    anonymous = Client(site.url)
    for path in ("/", "/status", "/?number=0312"):
        status, headers, _ = anonymous.request(path)
        assert status == 303 and headers["Location"].startswith("/login?next="), path
    # The language switch works before logging in (it only sets a cookie).
    status, headers, _ = anonymous.request("/lang/tr?next=/login")
    assert status == 303 and headers["Location"] == "/login"
    assert anonymous.cookie("lang") == "tr"
    for path in ("/api/recordings", _audio_path(key), _audio_path(key) + "?download=1"):
        status, headers, body = anonymous.request(path)
        assert status == 401 and "Basic" in headers["WWW-Authenticate"], path
        assert b"ID3" not in body and b"items" not in body
    for path in ("/zip", "/logout"):  # a form without a session: to the login, never a challenge
        status, headers, _ = anonymous.request(path, data={"key": key, "csrf_token": "x"})
        assert status == 303 and headers["Location"].startswith("/login?ended=1&next="), path
        assert "WWW-Authenticate" not in headers
    # The login page and static files are public.
    assert anonymous.request("/login")[0] == 200
    assert anonymous.request("/static/player.js")[0] == 200
    assert anonymous.request("/static/../config.py")[0] == 404


def test_login_logout_and_session_cookie(site: Site) -> None:
    client = Client(site.url)
    client.request("/login")
    status, headers, _ = client.request(
        "/login",
        data={"username": "ayse", "password": USERS["ayse"],
              "csrf_token": client.cookie("archiver_csrf") or "", "next": "//evil.example/"},
    )  # fmt: skip
    assert status == 303 and headers["Location"] == "/"  # never off-site
    cookie = headers["Set-Cookie"]
    assert "archiver_session=" in cookie and "HttpOnly" in cookie
    assert "SameSite=Strict" in cookie and "Max-Age=28800" in cookie
    assert "Secure" not in cookie  # no TLS here
    status, headers, body = client.request("/")
    assert status == 200 and b'name="number"' in body
    assert "default-src 'none'" in headers["Content-Security-Policy"]
    csrf = re.search(rb'name="csrf_token" value="([^"]+)"', body)
    assert csrf is not None
    assert client.request("/logout", data={"csrf_token": csrf.group(1).decode()})[0] == 303
    assert client.request("/")[0] == 303  # the session is gone


def test_csrf_is_checked_on_every_post(site: Site) -> None:
    fresh = Client(site.url)
    fresh.request("/login")
    no_token = {"username": "ayse", "password": USERS["ayse"]}
    assert fresh.request("/login", data=no_token)[0] == 403
    assert fresh.request("/login", data={**no_token, "csrf_token": "forged"})[0] == 403
    client = _logged_in(site)
    key = site.entries()[0].object_key
    assert client.request("/zip", data={"key": key})[0] == 403
    assert client.request("/zip", data={"key": key, "csrf_token": "forged"})[0] == 403
    assert client.request("/logout", data={"csrf_token": "forged"})[0] == 403
    assert client.request("/")[0] == 200  # still logged in


def test_failed_logins_are_throttled_per_user_and_address(strict_site: Site) -> None:
    client = Client(strict_site.url)
    assert [client.login("ayse", "wrong") for _ in range(3)] == [401, 401, 401]
    # The right password no longer helps while the window lasts; it is not even checked.
    assert client.login("ayse", USERS["ayse"]) == 429
    assert client.request("/login")[0] == 200
    client.request("/login")
    status, headers, _ = client.request(
        "/login", data={"username": "ayse", "password": USERS["ayse"],
                        "csrf_token": client.cookie("archiver_csrf") or ""},
    )  # fmt: skip
    assert status == 429 and int(headers["Retry-After"]) > 0
    # HTTP Basic counts the same way, for the same pair.
    api = Client(strict_site.url)
    status, headers, _ = api.request("/api/recordings", basic=("ayse", "wrong"))
    assert status == 429 and "Retry-After" in headers
    # Another user from the same address is not locked out by ayse's typos (an office behind
    # one NAT address): the address's own cap is login_max_failures_per_address.
    assert Client(strict_site.url).login("admin", USERS["admin"]) == 303


def test_api_answers_exactly_the_documented_shape(site: Site) -> None:
    entries = site.entries()
    client = Client(site.url)
    status, headers, body = client.request("/api/recordings?limit=4", basic=("ayse", USERS["ayse"]))
    assert status == 200 and headers["Content-Type"].startswith("application/json")
    answer = json.loads(body)
    assert set(answer) == {"items", "total", "total_capped", "page", "limit", "next"}
    assert answer["total"] == len(entries) == 6 and len(answer["items"]) == 4
    item = answer["items"][0]
    assert set(item) == {"key", "pbx", "trunk", "caller", "callee", "started_at", "duration_s",
                         "dial_status", "size_bytes", "audio_url", "direction"}  # fmt: skip
    newest = entries[0]
    assert item["key"] == newest.object_key
    assert item["started_at"] == newest.started_at.isoformat()
    assert item["audio_url"] == _audio_path(newest.object_key)
    rest = json.loads(client.request(f"/api/recordings?limit=4&cursor={answer['next']}",
                                     basic=("ayse", USERS["ayse"]))[2])  # fmt: skip
    assert rest["next"] is None and len(rest["items"]) == 2
    assert {i["key"] for i in answer["items"] + rest["items"]} == {e.object_key for e in entries}
    # By number, in another spelling, and by day.
    number = next(e.callee for e in entries if len(e.callee) == 12 and e.callee.startswith("90"))
    national = "0" + number[2:]
    query = f"/api/recordings?number={national}&from=2016-11-17&to=2016-11-17"
    found = json.loads(client.request(query, basic=("ayse", USERS["ayse"]))[2])
    assert found["total"] == sum(number in (e.caller, e.callee) for e in entries) >= 1
    bad = client.request("/api/recordings?from=17.11.2016", basic=("ayse", USERS["ayse"]))
    assert bad[0] == 400 and "YYYY-MM-DD" in json.loads(bad[2])["error"]


def test_audio_streams_with_ranges(site: Site, seaweed: SeaweedS3) -> None:
    entry = site.entries()[0]
    original = site.object_bytes(seaweed, entry.object_key)
    client = _logged_in(site)
    status, headers, body = client.request(_audio_path(entry.object_key))
    assert status == 200 and body == original
    assert headers["Content-Type"] == "audio/mpeg" and headers["Accept-Ranges"] == "bytes"
    assert headers["Content-Length"] == str(len(original))
    status, headers, body = client.request(
        _audio_path(entry.object_key), headers={"Range": "bytes=100-1099"}
    )
    assert status == 206 and body == original[100:1100]
    assert headers["Content-Range"] == f"bytes 100-1099/{len(original)}"
    status, _, body = client.request(_audio_path(entry.object_key), headers={"Range": "bytes=-10"})
    assert status == 206 and body == original[-10:]
    status, headers, _ = client.request(
        _audio_path(entry.object_key), headers={"Range": f"bytes={len(original) + 5}-"}
    )
    assert status == 416 and headers["Content-Range"] == f"bytes */{len(original)}"
    status, headers, body = client.request(_audio_path(entry.object_key) + "?download=1")
    assert status == 200 and body == original
    assert headers["Content-Disposition"] == f'attachment; filename="{entry.download_name}"'
    assert entry.download_name == entry.source_name.rsplit(".", 1)[0] + ".mp3"
    # Only catalogued keys: other objects in the bucket are not reachable through here.
    seaweed.client().put_object(Bucket=site.cfg.s3.bucket, Key="recordings/secret.txt", Body=b"x")
    assert client.request("/audio/recordings/secret.txt")[0] == 404


def test_several_recordings_download_as_one_zip(site: Site, seaweed: SeaweedS3) -> None:
    entries = site.entries()[:3]
    client = _logged_in(site)
    _, _, page = client.request("/")
    csrf = re.search(rb'name="csrf_token" value="([^"]+)"', page)
    assert csrf is not None
    status, headers, body = client.request(
        "/zip", data={"key": [e.object_key for e in entries], "csrf_token": csrf.group(1).decode()}
    )
    assert status == 200 and headers["Content-Type"] == "application/zip"
    assert "Content-Length" not in headers  # streamed, not built in memory first
    with zipfile.ZipFile(io.BytesIO(body)) as archive:
        assert archive.testzip() is None
        assert archive.namelist() == [e.download_name for e in entries]
        for entry in entries:
            assert archive.read(entry.download_name) == site.object_bytes(seaweed, entry.object_key)


def test_access_log_rows_and_audit(site: Site, archived: Config, tmp_path: Path) -> None:
    started = datetime.now(UTC)
    entry = site.entries()[1]
    client = Client(site.url)
    assert client.login("ayse", "not-her-password") == 401
    assert client.login("ayse", USERS["ayse"]) == 303
    client.request(_audio_path(entry.object_key), headers={"Range": "bytes=0-"})
    client.request(_audio_path(entry.object_key) + "?download=1")
    size = entry.size_bytes  # what was served, not what was asked
    assert size is not None
    db = open_database(archived.state.path)
    try:
        events = AccessLog(db).events(since=started, username="ayse")
    finally:
        db.close()
    seen = [(e.action, e.outcome, e.object_key, e.byte_range, e.source) for e in events]
    assert seen == [
        ("login", "refused", None, None, "127.0.0.1"),
        ("login", "ok", None, None, "127.0.0.1"),
        ("play", "ok", entry.object_key, f"bytes 0-{size - 1}/{size}", "127.0.0.1"),
        ("download", "ok", entry.object_key, None, "127.0.0.1"),
    ]
    config = tmp_path / "archiver.toml"
    config.write_text(_toml(archived), encoding="utf-8")
    result = subprocess.run(
        [sys.executable, "-m", "archiver", "audit", "--config", str(config), "--user", "ayse",
         "--since", started.date().isoformat(), "--json"],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    rows = json.loads(result.stdout)["events"]
    assert [(r["action"], r["outcome"]) for r in rows][-4:] == [
        ("login", "refused"), ("login", "ok"), ("play", "ok"), ("download", "ok")]  # fmt: skip
    text = subprocess.run(
        [sys.executable, "-m", "archiver", "audit", "--config", str(config)],
        capture_output=True, text=True, timeout=60, check=False,
    ).stdout  # fmt: skip
    assert entry.object_key in text and "refused" in text and USERS["ayse"] not in text


def _toml(cfg: Config) -> str:
    """A TOML file for `cfg`'s state, bucket and web tables (enough for `archiver audit`)."""
    pbx = cfg.pbx[0]
    return (
        f'[pbx]\nurl = "{pbx.url}"\nusername = "admin"\npassword_env = "UNUSED_PBX_PASSWORD"\n'
        f'[s3]\nbucket = "{cfg.s3.bucket}"\nendpoint_url = "{cfg.s3.endpoint_url}"\n'
        f'[state]\npath = "{cfg.state.path}"\n'
        f'[web]\nusers_file = "{cfg.web.users_file}"\n'
    )


def test_hostile_values_are_escaped(site: Site, archived: Config) -> None:
    hostile = '"><script>alert(1)</script><img src=x onerror=alert(2)>'
    db = open_database(archived.state.path)
    try:
        from archiver.state.catalogue import Catalogue

        entry = replace(site.entries()[0], object_key="recordings/hostile.mp3",
                        recording_key="pbx/x/hostile", dial_status=hostile)  # fmt: skip
        Catalogue(db).upsert(entry)
    finally:
        db.close()
    client = _logged_in(site)
    status, _, body = client.request("/?dial_status=" + quote(hostile))
    page = body.decode()
    assert "<script>alert" not in page and "<img src=x" not in page
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page  # shown, as text
    status, _, body = client.request("/?number=" + quote(hostile))
    assert status == 400 and b"<script>alert" not in body
    assert b"digits only" in body


def _rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise AssertionError("no VmRSS")


def test_archiver_web_command_streams_a_large_file_in_flat_memory(
    archived: Config, seaweed: SeaweedS3, tmp_path: Path
) -> None:
    """`archiver web passwd` then `archiver web` as an administrator runs them; a 64 MiB
    recording streams through while the server's memory stays flat."""
    port = free_port()
    config = tmp_path / "archiver.toml"
    users = tmp_path / "users"
    config.write_text(
        _toml(archived).replace(f'users_file = "{archived.web.users_file}"',
                                f'users_file = "{users}"\nlisten = "127.0.0.1:{port}"'),
        encoding="utf-8",
    )  # fmt: skip
    env = {**os.environ, **seaweed.aws_env()}
    env.pop("AWS_ENDPOINT_URL_S3")
    added = subprocess.run(
        [sys.executable, "-m", "archiver", "web", "passwd", "big", "--stdin", "--config",
         str(config)], input="Big-File-Listener-1\n", capture_output=True, text=True,
        timeout=60, check=False, env=env,
    )  # fmt: skip
    assert added.returncode == 0 and "added big" in added.stdout, added.stderr
    assert users.read_text().startswith("big:$2y$") and users.stat().st_mode & 0o777 == 0o600
    size = 64 * 1024 * 1024
    key = "recordings/pbx/big/20161117-120000-1-2-1479376800.1-3600.mp3"
    payload = bytes(range(256)) * (size // 256)
    seaweed.client().put_object(Bucket=archived.s3.bucket, Key=key, Body=payload)
    db = open_database(archived.state.path)
    try:
        from archiver.state.catalogue import Catalogue

        template = Catalogue(db).search(SearchQuery(limit=1)).items[0]
        Catalogue(db).upsert(replace(template, object_key=key, recording_key="pbx/big/x",
                                     size_bytes=size, source_name="big.gsm"))  # fmt: skip
    finally:
        db.close()
    log = (tmp_path / "web.log").open("w")
    process = subprocess.Popen(
        [sys.executable, "-m", "archiver", "web", "--config", str(config)],
        env=env, stdout=log, stderr=subprocess.STDOUT,
    )  # fmt: skip
    try:
        wait_for(f"http://127.0.0.1:{port}/login")
        client = Client(f"http://127.0.0.1:{port}")
        assert client.login("big", "Big-File-Listener-1") == 303
        before_kib = _rss_kib(process.pid)
        peak_kib = before_kib
        received = 0
        status = client.request(_audio_path(key), headers={"Range": "bytes=0-0"})[0]
        assert status == 206, (tmp_path / "web.log").read_text()
        request = urllib.request.Request(f"http://127.0.0.1:{port}{_audio_path(key)}")
        with client._opener.open(request, timeout=60) as response:
            while chunk := response.read(256 * 1024):
                received += len(chunk)
                peak_kib = max(peak_kib, _rss_kib(process.pid))
                time.sleep(0.002)  # a slow listener: the server must not buffer ahead
        assert received == size
        growth_mib = (peak_kib - before_kib) / 1024
        print(f"archiver web RSS: {before_kib / 1024:.1f} MiB before, peak growth "
              f"{growth_mib:.1f} MiB while streaming {size >> 20} MiB")  # fmt: skip
        assert growth_mib < 16
    finally:
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=30) == 0


def test_tls_serves_https_with_secure_cookies(
    archived: Config, seaweed: SeaweedS3, tmp_path: Path
) -> None:
    """With `[web] tls_cert` and `tls_key` the server speaks only HTTPS and marks its cookies
    Secure."""
    key = ec.generate_private_key(ec.SECP256R1())
    cert = _write(tmp_path, "web", _issue("localhost", key, ("localhost", key), ca=False), key)
    web_cfg = archived.web.model_copy(update={"tls_cert": cert.cert, "tls_key": cert.key})
    cfg = archived.model_copy(update={"web": web_cfg})
    trust = ssl.create_default_context(cafile=str(cert.cert))
    with s3_environment(seaweed), serving(cfg) as tls_site:
        https = tls_site.url.replace("http://", "https://")
        with urllib.request.urlopen(https + "/login", context=trust, timeout=30) as answer:  # noqa: S310
            assert answer.status == 200
            assert "Secure" in answer.headers["Set-Cookie"]
            # Browsers that saw it once never try plain HTTP again (issue 19, item 11).
            assert answer.headers["Strict-Transport-Security"] == "max-age=31536000"
        with pytest.raises((urllib.error.URLError, ConnectionError)):  # plain HTTP: no page
            urllib.request.urlopen(tls_site.url + "/login", timeout=10)  # noqa: S310


def test_archiver_web_on_a_taken_port_is_one_line_not_a_traceback(
    archived: Config, seaweed: SeaweedS3, tmp_path: Path
) -> None:
    """A port another process holds: one line naming [web] listen and the fix, exit 6."""
    import socket

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        config = tmp_path / "archiver.toml"
        config.write_text(
            _toml(archived).replace(f'users_file = "{archived.web.users_file}"',
                                    f'users_file = "{archived.web.users_file}"\n'
                                    f'listen = "127.0.0.1:{port}"'),
            encoding="utf-8",
        )  # fmt: skip
        env = {**os.environ, **seaweed.aws_env()}
        result = subprocess.run(
            [sys.executable, "-m", "archiver", "web", "--config", str(config)],
            capture_output=True, text=True, timeout=60, check=False, env=env,
        )  # fmt: skip
    assert result.returncode == 6, result.stderr
    assert "Traceback" not in result.stderr
    assert f"[web] listen = '127.0.0.1:{port}': cannot listen there (address already in use)" in (
        result.stderr
    )


@pytest.mark.parametrize(
    ("query", "status"),
    [
        ("to=9999-12-31", 200),  # OverflowError (500) before: a far date just searches
        ("from=0001-01-01&to=9999-12-31", 200),
        ("cursor=MTIzNDU2Nzg5MDEyMzQ1Njc4OTAxMjM0NTY6aw", 400),  # "12345678901234567890123456:k"
        ("from=2026-02-30", 400),
        ("page=0", 400),
        ("sort=evil", 400),
        ("number=05x2", 400),
        ("limit=99999999999999999999", 400),
    ],
)
def test_malformed_values_are_400_and_far_dates_never_500(
    site: Site, query: str, status: int
) -> None:
    client = Client(site.url)
    code, _, body = client.request(f"/api/recordings?{query}", basic=("ayse", USERS["ayse"]))
    assert code == status, (query, body)
    if status == 400:
        assert json.loads(body)["error"]  # the reason
    page = _logged_in(site)
    code, _, body = page.request(f"/?{query}")
    assert code == status, (query, body[:200])
