"""The compliance views through HTTP (a real archive on SeaweedFS, `archiver web` in a thread):
a call's access history, the audit page and its CSV, the court export (form and POST /api/export:
MP3s byte for byte, manifest.csv hashes, export.txt, refusals), roles kept apart, and a byte
changed in the bucket found when the web streams the whole file."""

from __future__ import annotations

import csv
import hashlib
import io
import re
import zipfile
from collections.abc import Iterator
from urllib.parse import quote, urlencode

import pytest
from compliance_support import PASSWORDS, archive_with_outside_calls, logged_in, split
from web_support import Client, Site, s3_environment, serving

from archiver.config import Config
from archiver.lab.seaweed import SeaweedS3
from archiver.state.access import AccessLog
from archiver.state.migrate import open_database


@pytest.fixture(scope="module")
def archived(seaweed: SeaweedS3, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Config]:
    tmp = tmp_path_factory.mktemp("compliance")
    with s3_environment(seaweed):
        yield archive_with_outside_calls(seaweed, tmp)


def _basic(user: str) -> tuple[str, str]:
    return (user, PASSWORDS[user])


def test_a_listener_has_no_compliance_views(site: Site) -> None:
    ayse = logged_in(site, "ayse")
    key = split(site)[0][0].object_key
    for path in ("/audit", "/audit.csv", f"/history/{quote(key)}", "/export"):
        assert ayse.request(path)[0] == 403, path
    status, _, _ = ayse.request("/api/export?case=x", data={}, basic=_basic("ayse"))
    assert status == 403
    assert b'href="/audit"' not in ayse.request("/")[2]


def test_an_officer_finds_who_played_a_call(site: Site) -> None:
    inside, outside = split(site)
    key = inside[0].object_key
    ayse = logged_in(site, "ayse")
    assert ayse.request("/audio/" + quote(key, safe="/"), headers={"Range": "bytes=0-99"})[0] == 206
    zeynep = logged_in(site, "zeynep")
    status, _, page = zeynep.request("/history/" + quote(key, safe="/"))
    assert status == 200
    rows = re.findall(rb'<tr class="event" data-action="(\w+)"><td class="when">([^<]+)</td>'
                      rb"<td>([^<]+)</td>", page)  # fmt: skip
    assert (b"play", b"ayse") in [(action, user) for action, _, user in rows]
    assert b"bytes 0-99/" in page  # which part was heard
    # The officer is not scoped: a call outside ayse's scope has a history page too.
    assert zeynep.request("/history/" + quote(outside[0].object_key, safe="/"))[0] == 200
    assert zeynep.request("/history/recordings/no/such.mp3")[0] == 404
    status, _, body = zeynep.request("/audit.csv?" + urlencode({"user": "ayse", "key": key}))
    listed = list(csv.DictReader(io.StringIO(body.decode())))
    assert status == 200 and [r["action"] for r in listed][-1:] == ["play"]
    assert listed[-1]["at"].endswith("+03:00")  # local time, with its offset
    _, _, audit = zeynep.request("/audit?" + urlencode({"action": "audit"}))
    assert b"access history" in audit  # looking at the history is itself logged


def test_a_court_export_holds_the_archived_bytes_and_their_hashes(
    site: Site, seaweed: SeaweedS3
) -> None:
    inside, outside = split(site)
    number = inside[0].callee
    wanted = [e for e in [*inside, *outside] if number in (e.caller, e.callee)]
    status, headers, body = Client(site.url).request(
        "/api/export?" + urlencode({"number": number}), data={"case": "2026/117 Esas"},
        basic=_basic("zeynep"),
    )  # fmt: skip
    assert status == 200 and headers["Content-Type"] == "application/zip", body[:200]
    with zipfile.ZipFile(io.BytesIO(body)) as archive:
        assert archive.testzip() is None
        manifest = list(csv.DictReader(io.StringIO(archive.read("manifest.csv").decode())))
        statement = archive.read("export.txt").decode()
        assert {row["key"] for row in manifest} == {e.object_key for e in wanted}
        for row in manifest:
            mp3 = archive.read(row["file"])
            assert mp3 == site.object_bytes(seaweed, row["key"])  # byte for byte
            assert hashlib.sha256(mp3).hexdigest() == row["sha256"]
            assert row["started_at"].endswith("+03:00") and len(row["source_sha256"]) in (0, 64)
        manifest_sha = hashlib.sha256(archive.read("manifest.csv")).hexdigest()
    assert f"manifest.csv SHA-256: {manifest_sha}" in statement
    assert (
        "Case reference:    2026/117 Esas" in statement and "zeynep (role compliance)" in statement
    )
    db = open_database(site.cfg.state.path)
    try:
        (event,) = AccessLog(db).events(action="export")
    finally:
        db.close()
    assert event.username == "zeynep" and "case=2026/117 Esas" in (event.detail or "")
    assert set(event.object_keys) == {e.object_key for e in wanted}


def test_an_export_needs_a_case_and_refuses_more_than_max_export(
    site: Site, archived: Config, seaweed: SeaweedS3
) -> None:
    client = Client(site.url)
    status, _, body = client.request("/api/export", data={"case": "  "}, basic=_basic("zeynep"))
    assert status == 400 and b"case reference" in body
    small = archived.model_copy(update={"web": archived.web.model_copy(update={"max_export": 3})})
    with s3_environment(seaweed), serving(small) as strict:
        total = len(site.entries())
        status, _, body = Client(strict.url).request(
            "/api/export", data={"case": "K-1"}, basic=_basic("admin"))  # fmt: skip
        assert status == 413
        assert f"{total} calls match, more than [web] max_export (3)".encode() in body
        officer = logged_in(strict, "zeynep")
        _, _, form = officer.request("/export")
        assert f"{total}".encode() in form and b'id="export-too-many"' in form


def test_a_byte_changed_in_the_bucket_is_found_when_streamed_whole(
    site: Site, seaweed: SeaweedS3
) -> None:
    inside, _ = split(site)
    victim = inside[-1].object_key
    client = seaweed.client()
    data = bytearray(client.get_object(Bucket=site.cfg.s3.bucket, Key=victim)["Body"].read())
    data[-10] ^= 0xFF
    client.put_object(Bucket=site.cfg.s3.bucket, Key=victim, Body=bytes(data))
    admin = logged_in(site, "admin")
    assert admin.request("/audio/" + quote(victim, safe="/"))[0] == 200
    _, _, status_page = admin.request("/status")
    assert re.search(rb'id="integrity-count">1<', status_page)
    _, _, history = admin.request("/history/" + quote(victim, safe="/"))
    assert b'id="integrity-bad"' in history
