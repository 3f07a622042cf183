"""Compliance in a real browser (Debian's Chromium driven by Playwright): a listener scoped to
extensions 100-199 never sees, plays or downloads another call (the page, the API, a guessed
audio URL, a zip); a compliance officer finds a call's access history and exports a court zip
whose manifest hashes match its MP3s. Screenshots of the history and audit views (and the
export's export.txt) go to build/screenshots/compliance/."""

from __future__ import annotations

import csv
import hashlib
import io
import zipfile
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import quote

import pytest
from compliance_support import PASSWORDS, archive_with_outside_calls, split
from playwright.sync_api import Browser, Page
from web_support import Site, s3_environment, serving

from archiver.lab.seaweed import SeaweedS3

SHOTS = Path(__file__).resolve().parent.parent / "build" / "screenshots" / "compliance"


@pytest.fixture(scope="module")
def site(seaweed: SeaweedS3, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Site]:
    tmp = tmp_path_factory.mktemp("compliance-browser")
    with s3_environment(seaweed):
        cfg = archive_with_outside_calls(seaweed, tmp)
        with serving(cfg) as running_site:
            yield running_site


def _login(page: Page, site: Site, user: str) -> None:
    page.goto(site.url + "/login")
    page.fill("input[name=username]", user)
    page.fill("input[name=password]", PASSWORDS[user])
    page.click("form.login button[type=submit]")
    page.wait_for_url(site.url + "/")


def _shown_keys(page: Page) -> list[str]:
    keys: list[str] = page.eval_on_selector_all(
        "tr[data-key]", "rows => rows.map(r => r.dataset.key)"
    )
    return keys


def test_a_scoped_listener_never_reaches_another_call(page: Page, site: Site) -> None:
    inside, outside = split(site)
    _login(page, site, "ayse")
    shown = _shown_keys(page)
    assert set(shown) == {e.object_key for e in inside}  # every call of hers, no other
    number = outside[0].callee  # searching for an outside party finds nothing
    page.goto(site.url + "/?number=" + quote(number))
    assert _shown_keys(page) == []
    api = page.evaluate("async () => (await fetch('/api/recordings?limit=500')).json()")
    assert {item["key"] for item in api["items"]} == {e.object_key for e in inside}
    for entry in outside:  # a guessed audio URL, played or downloaded
        for suffix in ("", "?download=1"):
            answer = page.goto(site.url + "/audio/" + quote(entry.object_key, safe="/") + suffix)
            assert answer is not None and answer.status == 404
    page.goto(site.url + "/")
    zipped = page.evaluate(
        """async (keys) => {
            const body = new URLSearchParams();
            body.append('csrf_token', document.querySelector('input[name=csrf_token]').value);
            for (const key of keys) body.append('key', key);
            return (await fetch('/zip', {method: 'POST', body})).status;
        }""",
        [inside[0].object_key, outside[0].object_key],
    )
    assert zipped == 404
    page.click(f'tr[data-key="{inside[0].object_key}"] [data-action=play]')
    page.wait_for_function(
        "() => { const a = document.querySelector('audio'); return a.readyState >= 1"
        " && a.duration > 0 || a.error; }", timeout=20_000)  # fmt: skip
    assert page.evaluate("() => document.querySelector('audio').error") is None


def test_an_officer_finds_the_history_and_exports_for_a_court(
    browser: Browser, site: Site, seaweed: SeaweedS3
) -> None:
    inside, _ = split(site)
    target = inside[0]
    listener = browser.new_context()
    try:  # ayse listens to the call first
        page = listener.new_page()
        _login(page, site, "ayse")
        page.click(f'tr[data-key="{target.object_key}"] [data-action=play]')
        page.wait_for_function("() => document.querySelector('audio').readyState >= 1",
                               timeout=20_000)  # fmt: skip
    finally:
        listener.close()
    officer = browser.new_context(accept_downloads=True, locale="en-GB",
                                  viewport={"width": 1280, "height": 900})  # fmt: skip
    try:
        page = officer.new_page()
        _login(page, site, "zeynep")
        page.click(f'tr[data-key="{target.object_key}"] [data-action=history]')
        page.wait_for_selector("#history")
        plays = page.locator('#history tr.event[data-action="play"]')
        assert plays.count() >= 1 and "ayse" in plays.first.inner_text()
        SHOTS.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(SHOTS / "history.png"), full_page=True)

        number = target.callee
        page.goto(site.url + "/?number=" + quote(number))
        wanted = set(_shown_keys(page))
        assert target.object_key in wanted
        page.click("#export-link")
        page.wait_for_selector("#export-form")
        assert str(len(wanted)) in page.locator("#export-count").inner_text()
        page.fill("#case", "İstanbul 12. Asliye Ceza 2026/117 E.")
        with page.expect_download() as exported:
            page.click("#export-form button[type=submit]")
        data = Path(exported.value.path()).read_bytes()
        with zipfile.ZipFile(io.BytesIO(data)) as archive:
            manifest_bytes = archive.read("manifest.csv")
            manifest = list(csv.DictReader(io.StringIO(manifest_bytes.decode())))
            assert {row["key"] for row in manifest} == wanted
            for row in manifest:
                mp3 = archive.read(row["file"])
                assert hashlib.sha256(mp3).hexdigest() == row["sha256"]
                assert mp3 == site.object_bytes(seaweed, row["key"])
                assert row["archive_check"] == "ok"
            statement = archive.read("export.txt").decode()
        assert hashlib.sha256(manifest_bytes).hexdigest() in statement
        assert "İstanbul 12. Asliye Ceza 2026/117 E." in statement
        (SHOTS / "export.txt").write_text(statement, encoding="utf-8")

        page.goto(site.url + "/audit?action=export")
        page.wait_for_selector("#audit")
        assert "zeynep" in page.locator('#audit tr.event[data-action="export"]').first.inner_text()
        page.screenshot(path=str(SHOTS / "audit.png"), full_page=True)
        with page.expect_download() as listed:
            page.click("#audit-csv")
        rows = list(csv.DictReader(io.StringIO(Path(listed.value.path()).read_text("utf-8"))))
        assert [r["action"] for r in rows] == ["export"] and rows[0]["username"] == "zeynep"
    finally:
        officer.close()
