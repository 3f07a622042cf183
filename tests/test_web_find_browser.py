"""Finding a call in a real browser (Debian's Chromium through Playwright), issue 18: an archive
of two PBXs (Europe/Istanbul and America/New_York) where each day's search returns exactly that
day's calls of both; partial numbers; times of day; sorting and numbered pages; readable rows
and directions; the phone layout at 390x844; the player's Pause, keys and speeds; an ended
session that leads to the login and back to the same search; both languages; and axe-core on
every view (no serious or critical violation). Screenshots go to build/screenshots/find/."""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import replace
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit
from zoneinfo import ZoneInfo

import pytest
from axe_playwright_python.sync_playwright import Axe  # type: ignore[import-untyped]
from playwright.sync_api import (
    Browser,
    BrowserContext,
    Page,
    ViewportSize,
    expect,
)
from web_support import USERS, Site, archive_day, s3_environment, serving, web_table

from archiver.config import Config
from archiver.lab.seaweed import SeaweedS3
from archiver.state.catalogue import Catalogue, CatalogueEntry, SearchQuery
from archiver.state.migrate import open_database

SHOTS = Path(__file__).resolve().parent.parent / "build" / "screenshots" / "find"
IST = ZoneInfo("Europe/Istanbul")
NYC = ZoneInfo("America/New_York")
PHONE: ViewportSize = {"width": 390, "height": 844}
DESKTOP: ViewportSize = {"width": 1280, "height": 860}
DAYS = (date(2026, 11, 30), date(2026, 12, 1), date(2026, 12, 2))
# (pbx, caller, callee) in turn; times spread over the three days around both midnights.
PARTIES = [
    ("pbx", "905325127222", "101"),
    ("pbx", "126", "05321112233"),
    ("pbx", "", "102"),
    ("pbx", "903123320404", "126"),
    ("pbx", "101", "102"),
    ("nyc", "12125550123", "1001"),
    ("nyc", "1002", "2125550199"),
    ("nyc", "905325127222", "1003"),
]


# One call only: index 3 starts at 30 Nov 01:21 in Istanbul.
ONE_CALL = "/?from=2026-11-30T01:21&to=2026-11-30T01:22"


def _spread(index: int) -> datetime:
    """Start times at each PBX's wall clock: every 67 minutes from 29 Nov 22:00."""
    return datetime(2026, 11, 29, 22, 0) + timedelta(minutes=67 * index)


@pytest.fixture(scope="module")
def site(seaweed: SeaweedS3, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Site]:
    tmp = tmp_path_factory.mktemp("find")
    with s3_environment(seaweed):
        cfg = archive_day(seaweed, tmp, web_table(tmp))
        cfg = _two_pbx(cfg, seaweed)
        with serving(cfg) as running_site:
            yield running_site


def _two_pbx(cfg: Config, seaweed: SeaweedS3) -> Config:
    """A second PBX in New York (US numbers, 4-digit extensions) and 80 calls over 30 Nov - 2
    Dec at both, each a copy of one of the real archived MP3s under a key of its own."""
    nyc = cfg.pbx[0].model_copy(
        update={"name": "nyc", "timezone": "America/New_York", "country": "US",
                "extension_digits": 4}
    )  # fmt: skip
    db = open_database(cfg.state.path)
    try:
        catalogue = Catalogue(db)
        real = list(catalogue.search(SearchQuery(limit=50)).items)
        client = seaweed.client()
        for index in range(80):
            pbx, caller, callee = PARTIES[index % len(PARTIES)]
            zone = NYC if pbx == "nyc" else IST
            source = real[index % len(real)]
            key = f"recordings/{pbx}/find/{index:03d}.mp3"
            origin = {"Bucket": cfg.s3.bucket, "Key": source.object_key}
            client.copy_object(Bucket=cfg.s3.bucket, Key=key, CopySource=origin)  # type: ignore[arg-type]
            catalogue.upsert(replace(
                source, object_key=key, recording_key=f"{pbx}/find/{index}", pbx=pbx,
                caller=caller, callee=callee, started_at=_spread(index).replace(tzinfo=zone),
                duration_s=source.duration_s, source_name=f"find-{index:03d}.wav",
            ))  # fmt: skip
    finally:
        db.close()
    return cfg.model_copy(update={"pbx": [cfg.pbx[0], nyc]})


def _entries(site: Site) -> list[CatalogueEntry]:
    db = open_database(site.cfg.state.path)
    try:
        return list(Catalogue(db).search(SearchQuery(limit=500)).items)
    finally:
        db.close()


def _context(browser: Browser, *, phone: bool = False, lang: str = "en") -> BrowserContext:
    locale = "tr-TR" if lang == "tr" else "en-GB"
    return browser.new_context(
        accept_downloads=True,
        locale=locale,
        viewport=PHONE if phone else DESKTOP,
        is_mobile=phone,
        has_touch=phone,
        extra_http_headers={"Accept-Language": f"{locale},{lang};q=0.9"},
    )


@pytest.fixture
def page(browser: Browser) -> Iterator[Page]:
    context = _context(browser)
    yield context.new_page()
    context.close()


@pytest.fixture
def phone(browser: Browser) -> Iterator[Page]:
    context = _context(browser, phone=True)
    yield context.new_page()
    context.close()


def _login(page: Page, site: Site, path: str = "/", user: str = "ayse") -> None:
    page.goto(site.url + path)
    assert "/login" in page.url
    page.fill("input[name=username]", user)
    page.fill("input[name=password]", USERS[user])
    page.click("#login-form button[type=submit]")
    page.wait_for_url(re.compile(re.escape(site.url) + r"/(\?.*)?$"))


def _shot(page: Page, name: str) -> None:
    """The page as a person sees it: the whole page on a desktop, the screen on a phone."""
    SHOTS.mkdir(parents=True, exist_ok=True)
    phone = (page.viewport_size or DESKTOP)["width"] <= PHONE["width"]
    page.screenshot(path=str(SHOTS / name), full_page=not phone)


def _keys(page: Page) -> list[str]:
    keys: list[str] = page.eval_on_selector_all(
        "[data-key]", "rows => rows.map(r => r.dataset.key)"
    )
    return keys


def _search(page: Page, **fields: str) -> None:
    for name, value in fields.items():
        selector = f"[name={name}]"
        if page.locator(selector).evaluate("e => e.tagName") == "SELECT":
            page.select_option(selector, value)
        else:
            page.fill(selector, value)
    with page.expect_navigation():
        page.click("#search-form button[type=submit]")


def _axe(page: Page, label: str) -> None:
    results = Axe().run(page)
    bad = [
        (violation["id"], violation["impact"], [node["target"] for node in violation["nodes"]])
        for violation in results.response["violations"]
        if violation["impact"] in ("serious", "critical")
    ]
    assert not bad, (label, bad)


def test_each_day_holds_exactly_that_days_calls_of_both_pbx(page: Page, site: Site) -> None:
    entries = [e for e in _entries(site) if "/find/" in e.object_key]
    _login(page, site, "/?limit=200")
    for day in DAYS:
        _search(page, **{"from": day.isoformat(), "to": day.isoformat(), "number": ""})
        expected = {e.object_key for e in entries if e.started_at.date() == day}
        shown = set(_keys(page))
        assert shown == expected, day
        assert {e.pbx for e in entries if e.object_key in expected} == {"pbx", "nyc"}
        starts = page.eval_on_selector_all("[data-key]", "r => r.map(e => e.dataset.startedAt)")
        assert all(s.startswith(day.isoformat()) for s in starts)  # the PBX's own day
        instants = [datetime.fromisoformat(s).timestamp() for s in starts]
        assert instants == sorted(instants, reverse=True)  # by the real instant
        assert int(page.get_attribute("[data-total]", "data-total") or -1) == len(expected)
    # Two zones of different offsets: every time says its zone.
    zones = set(page.locator("td.when .zone").all_inner_texts())
    assert zones >= {"UTC+03", "EST"}
    _shot(page, "after-desktop-two-pbx-day.png")
    # A time of day: 1 Dec 14:00-18:00 at each PBX.
    _search(page, **{"from": "2026-12-01T14:00", "to": "2026-12-01T18:00"})
    expected = {e.object_key for e in entries
                if e.started_at.date() == DAYS[1] and 14 <= e.started_at.hour < 18}  # fmt: skip
    assert set(_keys(page)) == expected and expected
    # The time picker adds a time to a typed date.
    _search(page, **{"from": "2026-12-01", "to": "2026-12-01"})
    page.fill("#f-from-time", "14:00")
    page.fill("#f-to-time", "18:00")
    with page.expect_navigation():
        page.click("#search-form button[type=submit]")
    assert parse_qs(urlsplit(page.url).query)["from"] == ["2026-12-01T14:00"]
    assert set(_keys(page)) == expected


def test_partial_numbers_and_readable_rows(page: Page, site: Site) -> None:
    entries = [e for e in _entries(site) if "/find/" in e.object_key]
    _login(page, site, "/?from=2026-11-01&to=2026-12-31")
    for typed, parties in (
        # 0532 at the Turkish PBX: every 0532 number in any spelling; at the US PBX "0532" is
        # no prefix, so digits anywhere (9 0532 5127222).
        ("0532", {"905325127222", "05321112233"}),
        ("512 72 22", {"905325127222"}),
        ("126", {"126"}),
    ):
        _search(page, number=typed)
        expected = {e.object_key for e in entries if {e.caller, e.callee} & parties}
        assert set(_keys(page)) == expected and expected, typed
    _search(page, number="0532 512 72 22")
    rows = page.locator("tr[data-pbx=pbx]")
    assert "0532 512 72 22" in rows.first.inner_text()
    nyc_row = page.locator("tr[data-pbx=nyc]").first
    # At the New York PBX a Turkish number is international, the extension as it is.
    assert "+90 532 512 72 22" in nyc_row.inner_text() and "1003" in nyc_row.inner_text()
    assert nyc_row.get_attribute("data-direction") == "in"
    _search(page, number="", direction="out")
    texts = page.locator("tr[data-key] td.callee").all_inner_texts()
    assert texts and "(212) 555-0199" in texts  # national at its own PBX
    assert set(page.eval_on_selector_all("[data-key]", "r => r.map(e => e.dataset.direction)")) \
        == {"out"}  # fmt: skip
    # The archive's trunks are choices (issue 18, item 11).
    trunks = page.eval_on_selector_all("select[name=trunk] option", "o => o.map(e => e.value)")
    assert {e.trunk for e in entries} <= set(trunks)
    _search(page, direction="", number="102")
    assert "unknown" in page.locator("tr[data-key] td.caller").all_inner_texts()
    # Bad input: a message saying what to fix, never an empty "no calls".
    response = page.goto(site.url + "/?number=05x2&from=2026-13-01")
    assert response is not None and response.status == 400
    assert page.locator("#search-error").is_visible()
    assert page.locator("[data-key]").count() == 0
    assert "no_results" not in page.content() and "No recordings match" not in page.content()
    for query, words in (("?sort=evil", "Sort"), ("?page=0", "Page"),
                         ("?from=2026-12-02&to=2026-12-01", "later than")):  # fmt: skip
        response = page.goto(site.url + "/" + query)
        assert response is not None and response.status == 400
        assert words in page.locator("#search-error").inner_text()


def test_sort_and_numbered_pages(page: Page, site: Site) -> None:
    entries = _entries(site)
    _login(page, site, "/?limit=20")
    assert page.get_attribute("[data-total]", "data-total") == str(len(entries))
    assert "1\u201320 of 86" in page.locator(".summary").inner_text()
    with page.expect_navigation():
        page.click("[data-page='3']")
    assert parse_qs(urlsplit(page.url).query)["page"] == ["3"]
    assert "41\u201360 of 86" in page.locator(".summary").inner_text()
    newest = [e.object_key for e in entries]
    assert _keys(page) == newest[40:60]
    with page.expect_navigation():
        page.click("[data-nav=last]")
    assert _keys(page) == newest[80:]
    with page.expect_navigation():
        page.click("th a[data-sort=duration]")
    query = parse_qs(urlsplit(page.url).query)
    assert query["sort"] == ["duration"] and query["order"] == ["desc"] and "page" not in query
    durations = page.eval_on_selector_all("[data-key]", "r => r.map(e => +e.dataset.durationS)")
    assert durations == sorted(durations, reverse=True)
    assert page.get_attribute("th[aria-sort]", "aria-sort") == "descending"
    with page.expect_navigation():
        page.click("th a[data-sort=duration]")
    durations = page.eval_on_selector_all("[data-key]", "r => r.map(e => +e.dataset.durationS)")
    assert durations == sorted(durations)
    # The API takes the same parameters.
    answer: dict[str, Any] = page.evaluate(
        "() => fetch('/api/recordings?sort=duration&order=asc&page=2&limit=10').then(r => r.json())"
    )
    assert answer["total"] == len(entries) and answer["page"] == 2
    api_durations = [item["duration_s"] for item in answer["items"]]
    assert api_durations == sorted(api_durations) and {"direction"} <= set(answer["items"][0])


def test_player_pause_keys_speed_and_live_region(page: Page, site: Site) -> None:
    _login(page, site, "/?from=2026-12-01&to=2026-12-01")
    first = page.locator("tr[data-key]").nth(0)
    play = first.locator("[data-action=play]")
    assert re.match(r"Play .+, 1 Dec \d\d:\d\d", play.get_attribute("aria-label") or "")
    play.click()
    page.wait_for_function("() => !document.querySelector('audio').paused")
    # audio.paused flips at once; the button is relabelled by the "play" event, a task later.
    expect(play).to_have_text(re.compile(r"Pause\s*$"))
    expect(play).to_have_attribute("aria-label", re.compile(r"^Pause "))
    page.wait_for_function("() => document.getElementById('live').textContent.includes('Playing')")
    _axe(page, "playing")
    _shot(page, "after-desktop-playing.png")
    play.click()  # Pause pauses: it does not restart
    page.wait_for_function("() => document.querySelector('audio').paused")
    expect(play).to_have_text(re.compile(r"Play\s*$"))
    page.locator(".summary p").first.click()  # focus away from the controls
    page.keyboard.press("Space")
    page.wait_for_function("() => !document.querySelector('audio').paused")
    page.keyboard.press("Space")
    page.wait_for_function("() => document.querySelector('audio').paused")
    page.evaluate("() => { document.querySelector('audio').currentTime = 1; }")
    page.wait_for_function("() => document.querySelector('audio').seeking === false")
    page.keyboard.press("ArrowRight")
    page.wait_for_function("() => document.querySelector('audio').currentTime >= 10.5")
    page.keyboard.press("ArrowLeft")
    page.wait_for_function("() => document.querySelector('audio').currentTime < 2")
    page.click("[data-rate='1.5']")
    assert page.get_attribute("[data-rate='1.5']", "aria-pressed") == "true"
    assert page.get_attribute("[data-rate='1']", "aria-pressed") == "false"
    assert page.evaluate("() => document.querySelector('audio').playbackRate") == 1.5
    assert "Space" in page.locator("#keys-help").inner_text()
    # Another row's Play switches to it.
    second = page.locator("tr[data-key]").nth(1).locator("[data-action=play]")
    second.click()
    page.wait_for_function("() => !document.querySelector('audio').paused")
    expect(play).to_have_text(re.compile(r"Play\s*$"))
    expect(second).to_have_text(re.compile(r"Pause\s*$"))


def test_an_ended_session_leads_to_the_login_and_back(browser: Browser, site: Site) -> None:
    context = _context(browser)
    try:
        page = context.new_page()
        search = "/?number=0532&from=2026-12-01&to=2026-12-01"
        _login(page, site, search)
        assert page.url == site.url + search
        challenged: list[str] = []
        page.on(
            "response",
            lambda r: challenged.append(r.url) if "www-authenticate" in r.headers else None,
        )
        other = context.new_page()  # the same user logs out in another tab
        other.goto(site.url + "/")
        with other.expect_navigation():
            other.click("form[action='/logout'] button")
        # Play: the player's request is refused; the page goes to the login, saying why.
        with page.expect_navigation(url=re.compile(r"/login\?ended=1")):
            page.locator("[data-action=play]").first.click()
        assert page.locator("#session-ended").is_visible()
        _axe(page, "login, session ended")
        page.fill("input[name=username]", "ayse")
        page.fill("input[name=password]", USERS["ayse"])
        with page.expect_navigation(url=site.url + search):
            page.click("#login-form button[type=submit]")
        # Download and zip after another logout: the same way back.
        with other.expect_navigation():
            other.goto(site.url + "/")
        with other.expect_navigation():
            other.click("form[action='/logout'] button")
        with page.expect_navigation(url=re.compile(r"/login\?ended=1")):
            page.locator("[data-action=download]").first.click()
        _login_again(page, site, search)
        with other.expect_navigation():
            other.goto(site.url + "/")
        with other.expect_navigation():
            other.click("form[action='/logout'] button")
        page.locator("input[name=key]").first.check()
        with page.expect_navigation(url=re.compile(r"/login\?ended=1")):
            page.click("#zip-form button.zip")
        _login_again(page, site, search)
        assert challenged == []  # never an HTTP Basic challenge to the page
    finally:
        context.close()


def _login_again(page: Page, site: Site, search: str) -> None:
    page.fill("input[name=username]", "ayse")
    page.fill("input[name=password]", USERS["ayse"])
    with page.expect_navigation(url=site.url + search):
        page.click("#login-form button[type=submit]")


def _overflow_and_small_controls(page: Page) -> tuple[int, list[str]]:
    width: int = page.evaluate("() => document.documentElement.scrollWidth")
    small: list[str] = page.evaluate(
        """() => Array.from(document.querySelectorAll(
              'a, button, input:not([type=hidden]), select, summary'))
            .filter(e => { const r = e.getBoundingClientRect();
                           return r.width > 0 && r.height > 0 && r.height < 44 - 0.5
                                  && e.type !== 'checkbox'; })
            .map(e => e.outerHTML.slice(0, 80))"""
    )
    return width, small


def test_phone_layout(phone: Page, site: Site, browser: Browser) -> None:
    phone.goto(site.url + "/login")
    width, small = _overflow_and_small_controls(phone)
    assert width <= PHONE["width"] and not small, (width, small)
    _axe(phone, "login, phone")
    _shot(phone, "after-phone-login.png")
    _login(phone, site, "/?from=2026-12-01&to=2026-12-01")
    width, small = _overflow_and_small_controls(phone)
    assert width <= PHONE["width"] and not small, (width, small)
    _axe(phone, "results, phone")
    _shot(phone, "after-phone-results.png")
    # Tap Play on the last row: the player never covers the row being tapped.
    last = phone.locator("tr[data-key]").last
    last.locator("[data-action=play]").tap()
    phone.wait_for_function("() => !document.querySelector('audio').paused")
    phone.wait_for_timeout(300)
    row_box = last.bounding_box()
    player_box = phone.locator("#player-box").bounding_box()
    assert row_box is not None and player_box is not None
    assert row_box["y"] + row_box["height"] <= player_box["y"] + 1, (row_box, player_box)
    last.locator("[data-action=play]").tap()  # the same control pauses
    phone.wait_for_function("() => document.querySelector('audio').paused")
    _shot(phone, "after-phone-playing.png")
    admin = _context(browser, phone=True)
    try:
        status = admin.new_page()
        _login(status, site, "/", user="admin")
        status.goto(site.url + "/status")
        width, small = _overflow_and_small_controls(status)
        assert width <= PHONE["width"] and not small, (width, small)
        _axe(status, "status, phone")
        _shot(status, "after-phone-status.png")
    finally:
        admin.close()


def test_accessibility_on_the_desktop(page: Page, site: Site, browser: Browser) -> None:
    page.goto(site.url + "/login")
    _axe(page, "login")
    _shot(page, "after-desktop-login.png")
    _login(page, site)
    _axe(page, "results")
    _shot(page, "after-desktop-results.png")
    page.screenshot(path=str(SHOTS / "results-screen.png"))  # the README's picture
    assert page.evaluate("() => document.documentElement.scrollWidth") <= DESKTOP["width"]
    # The keyboard reaches the first Play quickly: the first Tab offers "Skip to results".
    page.keyboard.press("Tab")
    assert page.evaluate("() => document.activeElement.getAttribute('href')") == "#results"
    page.keyboard.press("Enter")
    tabs = 0
    while tabs < 10:
        page.keyboard.press("Tab")
        tabs += 1
        if page.evaluate("() => document.activeElement.dataset.action") == "play":
            break
    assert tabs <= 3, tabs
    admin = browser.new_context(viewport=DESKTOP)
    try:
        status = admin.new_page()
        _login(status, site, "/", user="admin")
        status.goto(site.url + "/status")
        _axe(status, "status")
        _shot(status, "after-desktop-status.png")
    finally:
        admin.close()


def test_turkish_everywhere(browser: Browser, site: Site) -> None:
    context = _context(browser, lang="en")
    try:
        page = context.new_page()
        page.goto(site.url + "/login")
        with page.expect_navigation():
            page.click("a.lang")  # the switch works before logging in
        assert page.locator("h1").inner_text() == "Giriş"
        page.fill("input[name=username]", "admin")
        page.fill("input[name=password]", USERS["admin"])
        with page.expect_navigation():
            page.click("#login-form button[type=submit]")
        page.goto(site.url + "/?number=126&from=2026-11-30&to=2026-11-30")
        total = page.locator("#total")
        assert total.inner_text().endswith("kay\u0131t")
        page.goto(site.url + ONE_CALL)
        assert page.get_attribute("[data-total]", "data-total") == "1"
        assert total.inner_text() == "1 kay\u0131t"
        page.goto(site.url + "/?from=2026-12-01&to=2026-12-01")
        directions = set(page.locator("td.direction").all_inner_texts())
        assert {"gelen", "giden", "dahili"} >= directions >= {"gelen", "giden"}
        page.goto(site.url + "/?from=2026-12-02&to=2026-12-01")
        message = page.locator("#search-error").inner_text()
        assert "Bitiş" in message and "before" not in message and "later" not in message
        page.goto(site.url + "/?page=0")
        assert "Sayfa" in page.locator("#search-error").inner_text()
        _axe(page, "results, Turkish")
        page.goto(site.url + "/status")
        assert "doğruland\u0131" in page.locator("table.counts").inner_text()
        assert "verified" not in page.locator("table.counts").inner_text()
        _shot(page, "after-desktop-status-tr.png")
        with page.expect_navigation():
            page.click("a.lang")
        page.goto(site.url + ONE_CALL)
        assert page.locator("#total").inner_text() == "1 recording"
        page.goto(site.url + "/?from=2026-11-30&to=2026-11-30")
        assert re.fullmatch(r"\d+ recordings", page.locator("#total").inner_text())
    finally:
        context.close()
