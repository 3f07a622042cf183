"""`archiver web` in a real browser (Debian's Chromium driven by Playwright): log in, search by
number, play, seek, change speed, download one and several, switch language, the status view, and
hostile values that must stay text. Screenshots of the login, results and status views go to
build/screenshots/ (the README shows one of them, copied to docs/)."""

from __future__ import annotations

import io
import zipfile
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from urllib.parse import quote

import pytest
from playwright.sync_api import Browser, Page
from web_support import USERS, Site, archive_day, s3_environment, serving, web_table

from archiver.config import Config
from archiver.lab.seaweed import SeaweedS3
from archiver.state.catalogue import Catalogue, SearchQuery
from archiver.state.ledger import Ledger
from archiver.state.migrate import open_database

SHOTS = Path(__file__).resolve().parent.parent / "build" / "screenshots"


@pytest.fixture(scope="module")
def site(seaweed: SeaweedS3, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Site]:
    tmp = tmp_path_factory.mktemp("browser")
    with s3_environment(seaweed):
        cfg = archive_day(seaweed, tmp, web_table(tmp))
        _add_hostile_rows(cfg)
        with serving(cfg) as running_site:
            yield running_site


HOSTILE = '"><script>__pwned=1</script><img src=x onerror="__pwned=2">'


def _add_hostile_rows(cfg: Config) -> None:
    """A dial status and a failure reason carrying markup, as a hostile PBX could send."""
    ledger = Ledger(open_database(cfg.state.path))
    try:
        catalogue = Catalogue(ledger.db)
        newest = catalogue.search(SearchQuery(limit=1)).items[0]
        catalogue.upsert(replace(newest, object_key=newest.object_key.replace(".mp3", "-x.mp3"),
                                 recording_key="pbx/hostile/x", dial_status=HOSTILE))  # fmt: skip
        ledger.db.execute(
            "INSERT INTO recordings (key, pbx, folder, name, day, state, attempts, last_error,"
            " discovered_at, updated_at) VALUES ('pbx/t/bad', 'pbx', 't', 'bad.gsm',"
            " '2016-11-17', 'failed', 3, ?, 0, 0)",
            [HOSTILE],
        )
    finally:
        ledger.close()


def _login(page: Page, site: Site, user: str = "ayse", *, shot: str | None = None) -> None:
    page.goto(site.url + "/")
    assert page.url.startswith(site.url + "/login")  # sent to the login form first
    page.fill("input[name=username]", user)
    page.fill("input[name=password]", USERS[user])
    if shot:
        SHOTS.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(SHOTS / shot), full_page=True)
    page.click("button[type=submit]")
    page.wait_for_url(site.url + "/")


def _audio_state(page: Page) -> dict[str, object]:
    state: dict[str, object] = page.evaluate(
        "() => { const a = document.querySelector('audio'); return {d: a.duration,"
        " ready: a.readyState, err: a.error && a.error.code, t: a.currentTime,"
        " rate: a.playbackRate, src: a.getAttribute('src')}; }"
    )
    return state


def test_find_a_call_by_number_and_play_it(page: Page, site: Site) -> None:
    entries = [e for e in site.entries() if e.recording_key != "pbx/hostile/x"]
    target = next(e for e in entries if len(e.callee) == 12 and e.callee.startswith("90"))
    _login(page, site, shot="login.png")
    national = (
        f"0{target.callee[2:5]} {target.callee[5:8]} {target.callee[8:10]} {target.callee[10:]}"
    )
    page.fill("input[name=number]", national)  # typed as people write it: 0312 332 04 04
    page.fill("input[name=from]", "2016-11-17")
    page.fill("input[name=to]", "2016-11-17")
    page.click("#search-form button[type=submit]")
    page.wait_for_selector(f'tr[data-key="{target.object_key}"]')
    keys = page.eval_on_selector_all("tr[data-key]", "rows => rows.map(r => r.dataset.key)")
    expected = [e.object_key for e in entries if target.callee in (e.caller, e.callee)]
    assert keys == expected  # newest first, caller or callee
    assert page.locator("audio").count() == 1

    page.click(f'tr[data-key="{target.object_key}"] [data-action=play]')
    page.wait_for_function(
        "() => { const a = document.querySelector('audio'); return a.readyState >= 1"
        " && a.duration > 0 || a.error; }",
        timeout=20_000,
    )
    state = _audio_state(page)
    SHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SHOTS / "results.png"), full_page=True)  # the row playing
    assert state["err"] is None
    assert abs(float(state["d"]) - target.duration_s) < 1.5  # type: ignore[arg-type]
    # Seek (a Range request to the server) and skip +10 s; the speed buttons set the rate.
    page.evaluate(
        "() => { const a = document.querySelector('audio'); a.pause(); a.currentTime = 2; }"
    )
    page.wait_for_function("() => document.querySelector('audio').seeking === false")
    page.click("[data-skip='10']")
    page.wait_for_function("() => document.querySelector('audio').currentTime >= 11.5")
    page.click("[data-rate='2']")
    after = _audio_state(page)
    assert after["err"] is None and after["rate"] == 2
    page.click("[data-skip='-10']")
    assert float(_audio_state(page)["t"]) < 3  # type: ignore[arg-type]
    page.click("[data-rate='1.5']")
    assert _audio_state(page)["rate"] == 1.5


def test_download_one_and_several(page: Page, site: Site, seaweed: SeaweedS3) -> None:
    entries = [e for e in site.entries() if e.recording_key != "pbx/hostile/x"]
    _login(page, site)
    first = entries[0]
    with page.expect_download() as one:
        page.click(f'tr[data-key="{first.object_key}"] [data-action=download]')
    download = one.value
    assert download.suggested_filename == first.download_name
    assert Path(download.path()).read_bytes() == site.object_bytes(seaweed, first.object_key)

    chosen = entries[1:3]
    for entry in chosen:
        page.check(f'tr[data-key="{entry.object_key}"] input[name=key]')
    with page.expect_download() as several:
        page.click("#zip-form button.zip")
    data = Path(several.value.path()).read_bytes()
    with zipfile.ZipFile(io.BytesIO(data)) as archive:
        assert sorted(archive.namelist()) == sorted(e.download_name for e in chosen)
        for entry in chosen:
            assert archive.read(entry.download_name) == site.object_bytes(seaweed, entry.object_key)


def test_turkish_from_the_browser_and_the_switch(browser: Browser, site: Site) -> None:
    context = browser.new_context(
        locale="tr-TR", extra_http_headers={"Accept-Language": "tr-TR,tr;q=0.9"}
    )
    page = context.new_page()
    try:
        page.goto(site.url + "/login")
        assert page.locator("h1").inner_text() == "Giriş"
        page.fill("input[name=username]", "ayse")
        page.fill("input[name=password]", USERS["ayse"])
        page.click("button[type=submit]")
        page.wait_for_url(site.url + "/")
        assert "kay\u0131t" in page.locator("#total").inner_text()  # the Turkish for records
        page.click("a.lang")  # switch to English, kept in a cookie
        page.wait_for_load_state()
        assert "recordings" in page.locator("#total").inner_text()
    finally:
        context.close()


def test_status_view_for_admins(page: Page, site: Site, browser: Browser) -> None:
    _login(page, site, "admin")
    page.goto(site.url + "/status")
    assert page.locator("svg.chart rect.bar").count() == 30
    assert page.locator("#catalogue-total").inner_text() == str(len(site.entries()))
    reasons = page.locator("td.reason").all_inner_texts()
    assert HOSTILE in reasons  # shown as text
    page.screenshot(path=str(SHOTS / "status.png"), full_page=True)
    other = browser.new_context()
    try:
        user_page = other.new_page()
        _login(user_page, site, "ayse")
        response = user_page.goto(site.url + "/status")
        assert response is not None and response.status == 403
    finally:
        other.close()


def test_hostile_values_stay_text_in_the_browser(page: Page, site: Site) -> None:
    _login(page, site, "admin")
    page.goto(site.url + "/?dial_status=" + quote(HOSTILE))
    assert page.locator("tr[data-key]").count() == 1
    assert HOSTILE in page.locator("tr[data-key] td").all_inner_texts()
    page.goto(site.url + "/status")
    assert page.evaluate("() => window.__pwned") is None
    assert page.locator("script").count() == 0  # the status view has none; no injected one
    page.goto(site.url + "/?number=" + quote(HOSTILE))
    assert page.evaluate("() => window.__pwned") is None
    assert page.input_value("input[name=number]") == HOSTILE  # echoed as a value, not markup
