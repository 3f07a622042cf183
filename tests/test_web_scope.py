"""Roles and scopes through HTTP (a real archive on SeaweedFS, `archiver web` in a thread): a
listener scoped to extensions 100-199 gets 404 for every other call, through the page, the API,
audio, downloads and zips; searches are logged with their filters and counts."""

from __future__ import annotations

import json
from collections.abc import Iterator
from urllib.parse import quote

import pytest
from compliance_support import PASSWORDS, archive_with_outside_calls, logged_in, split
from web_support import Client, Site, s3_environment

from archiver.config import Config
from archiver.lab.seaweed import SeaweedS3
from archiver.state.access import AccessLog
from archiver.state.migrate import open_database


@pytest.fixture(scope="module")
def archived(seaweed: SeaweedS3, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Config]:
    tmp = tmp_path_factory.mktemp("scope")
    with s3_environment(seaweed):
        yield archive_with_outside_calls(seaweed, tmp)


def _audio(key: str) -> str:
    return "/audio/" + quote(key, safe="/")


def test_a_listener_never_reaches_a_call_outside_the_scope(site: Site) -> None:
    inside, outside = split(site)
    ayse = logged_in(site, "ayse")
    _, _, page = ayse.request("/")
    for entry in outside:
        assert entry.object_key.encode() not in page
        for path in (_audio(entry.object_key), _audio(entry.object_key) + "?download=1"):
            status, _, body = ayse.request(path, headers={"Range": "bytes=0-"})
            assert status == 404 and b"ID3" not in body, path
            assert ayse.request(path, basic=("ayse", PASSWORDS["ayse"]))[0] == 404
    assert inside[0].object_key.encode() in page
    status, _, body = ayse.request("/api/recordings?limit=500", basic=("ayse", PASSWORDS["ayse"]))
    listed = json.loads(body)
    assert status == 200 and listed["total"] == len(inside)
    assert {item["key"] for item in listed["items"]} == {e.object_key for e in inside}
    csrf = _csrf(ayse)
    status, _, _ = ayse.request(
        "/zip", data={"key": [inside[0].object_key, outside[0].object_key], "csrf_token": csrf}
    )
    assert status == 404
    assert ayse.request(_audio(inside[0].object_key))[0] == 200
    # The same calls are there for someone whose scope holds them.
    admin = logged_in(site, "admin")
    assert admin.request(_audio(outside[0].object_key), headers={"Range": "bytes=0-9"})[0] == 206


def _csrf(client: Client) -> str:
    import re

    _, _, page = client.request("/")
    found = re.search(rb'name="csrf_token" value="([^"]+)"', page)
    assert found is not None
    return found.group(1).decode()


def test_searches_are_logged_with_filters_and_counts(site: Site) -> None:
    inside, _ = split(site)
    number = inside[0].callee or inside[0].caller
    ayse = logged_in(site, "ayse")
    ayse.request(f"/?number={quote(number)}")
    db = open_database(site.cfg.state.path)
    try:
        searches = AccessLog(db).events(action="search", username="ayse")
    finally:
        db.close()
    assert searches and f"number={number}" in (searches[-1].detail or "")
    assert searches[-1].item_count == sum(number in (e.caller, e.callee) for e in inside)
