"""Finding a call (issue 18) on both backends (`state`: SQLite and PostgreSQL): partial numbers
through their index, days at each call's own PBX with two PBXs in different zones, sorting and
numbered pages, the direction filter, an index under every filter, and malformed or far values
refused with a reason."""

from __future__ import annotations

import random
import re
from dataclasses import replace
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from archiver.names import parse_name
from archiver.state.api import State
from archiver.state.catalogue import (
    COUNT_CAP,
    CatalogueEntry,
    DialPlan,
    InvalidQuery,
    PbxDialPlan,
    SearchQuery,
    catalogue_entry,
)
from archiver.state.db import Db, Param
from archiver.state.digits import match_number
from archiver.web.query import parse_search

IST = ZoneInfo("Europe/Istanbul")
NYC = ZoneInfo("America/New_York")
FOLDER = "trunk-sip-908502591905"
NAME = "20261201-101500-100-903123320404-1796112900.11-42.gsm"
TEMPLATE = catalogue_entry(parse_name("ist", FOLDER, NAME, IST), object_key="k", size_bytes=1)
TWO_COUNTRIES = DialPlan(
    default=PbxDialPlan("TR"), pbxs=(("ist", PbxDialPlan("TR")), ("nyc", PbxDialPlan("US", 4)))
)


def _add(state: State, index: int, *, caller: str, callee: str = "100", pbx: str = "ist",
         started: datetime | None = None, duration_s: int = 30,
         dial_status: str | None = None) -> CatalogueEntry:  # fmt: skip
    entry = replace(
        TEMPLATE,
        object_key=f"k/{index:03d}.mp3",
        recording_key=f"r/{index}",
        pbx=pbx,
        caller=caller,
        callee=callee,
        started_at=started or datetime(2026, 12, 1, 10, 0, tzinfo=IST) + timedelta(minutes=index),
        duration_s=duration_s,
        dial_status=dial_status,
    )
    state.catalogue.upsert(entry)
    return entry


def _keys(state: State, query: SearchQuery) -> set[str]:
    page = state.catalogue.search(replace(query, limit=500))
    assert page.total == len(page.items)
    return {entry.object_key for entry in page.items}


PARTIES = {
    0: "905325127222",  # international without +
    1: "05325127222",  # national
    2: "+905321112233",  # with +
    3: "5329998877",  # national number without any prefix
    4: "00905324445566",  # international prefix
    5: "903123320404",  # Ankara: not 0532
    6: "126",  # an extension
    7: "1260",  # another extension
    8: "anonymous",  # no digits at all
    9: "",  # unknown
}


@pytest.fixture
def numbers(state: State) -> State:
    for index, caller in PARTIES.items():
        _add(state, index, caller=caller)
    return state


@pytest.mark.parametrize("typed", ["0532", "90532", "+90 532", "0090532", "(0532)"])
def test_a_national_prefix_finds_every_spelling_of_it(numbers: State, typed: str) -> None:
    assert _keys(numbers, SearchQuery(number=typed)) == {f"k/{i:03d}.mp3" for i in (0, 1, 2, 3, 4)}


@pytest.mark.parametrize("typed", ["5127222", "512 72 22", "512-72-22", "51.27.222"])
def test_other_digits_match_anywhere(numbers: State, typed: str) -> None:
    assert _keys(numbers, SearchQuery(number=typed)) == {"k/000.mp3", "k/001.mp3"}


def test_an_extension_and_short_digits(numbers: State) -> None:
    # 126 is anywhere: the extension 126, the extension 1260 (and no number holds 126).
    assert _keys(numbers, SearchQuery(number="126")) == {"k/006.mp3", "k/007.mp3"}
    assert _keys(numbers, SearchQuery(number="332 04 04")) == {"k/005.mp3"}
    assert _keys(numbers, SearchQuery(number="0404")) == set()  # 0: a national prefix
    _add(numbers, 20, caller="12")
    assert _keys(numbers, SearchQuery(number="12")) == {"k/020.mp3"}  # two digits: exactly


@pytest.mark.parametrize(
    "typed", ["0532 512 72 22", "+90 532 512 72 22", "905325127222", "0090 532 512 7222"]
)
def test_a_full_number_in_any_spelling_finds_exactly_its_calls(numbers: State, typed: str) -> None:
    assert _keys(numbers, SearchQuery(number=typed)) == {"k/000.mp3", "k/001.mp3"}


@pytest.mark.parametrize("typed", ["12ab", "0532;--", "+", "1" * 40])
def test_letters_in_a_number_are_refused_with_a_reason(numbers: State, typed: str) -> None:
    with pytest.raises(InvalidQuery) as raised:
        numbers.catalogue.search(SearchQuery(number=typed))
    assert raised.value.code == "number" and raised.value.reason


def test_the_prefixes_follow_each_pbx_country(state: State) -> None:
    _add(state, 1, caller="05321234567", pbx="ist")
    _add(state, 2, caller="12125550123", pbx="nyc", callee="1001")
    _add(state, 3, caller="2125550199", pbx="nyc", callee="1001")
    _add(state, 4, caller="0212555999", pbx="ist")  # Istanbul's 0212, not New York's 212
    # 1 212 is New York's prefix at the US PBX; at the Turkish PBX "1212" is digits anywhere.
    found = _keys(state, SearchQuery(number="1 212", dial_plan=TWO_COUNTRIES))
    assert found == {"k/002.mp3", "k/003.mp3"}
    assert _keys(state, SearchQuery(number="0532", dial_plan=TWO_COUNTRIES)) == {"k/001.mp3"}
    # Directions, the US PBX with 4-digit extensions: 12345 is an extension only in Istanbul.
    _add(state, 5, caller="2125550100", pbx="nyc", callee="12345")
    _add(state, 6, caller="12345", pbx="ist", callee="05321234567")
    _add(state, 7, caller="1002", pbx="nyc", callee="1003")

    def direction(value: str) -> set[str]:
        return _keys(state, SearchQuery(direction=value, dial_plan=TWO_COUNTRIES))

    assert direction("in") == {"k/001.mp3", "k/002.mp3", "k/003.mp3", "k/004.mp3"}
    assert direction("out") == {"k/006.mp3"}
    assert direction("internal") == {"k/007.mp3"}


def test_match_number_reads_prefixes_from_phonenumbers() -> None:
    assert match_number("0532", "TR").prefixes == ("0090532", "0532", "90532")
    assert match_number("0532", "TR").bare_prefix == "532"
    assert match_number("011 1 212", "US").prefixes == ("0111212", "1212")
    assert match_number("011 44 20", "US").anywhere == "0114420"  # another country: anywhere
    assert match_number("5127222", "TR").anywhere == "5127222"
    assert match_number("12", "TR").exact == "12"


def _two_pbx_day(state: State) -> dict[str, datetime]:
    """Calls near midnight at Istanbul (UTC+3) and New York (UTC-5) on 30 Nov - 2 Dec."""
    starts = {
        "ist-late-30": datetime(2026, 11, 30, 23, 50, tzinfo=IST),
        "ist-early-1": datetime(2026, 12, 1, 0, 10, tzinfo=IST),
        "ist-late-1": datetime(2026, 12, 1, 23, 59, tzinfo=IST),
        "ist-early-2": datetime(2026, 12, 2, 0, 0, tzinfo=IST),
        "nyc-late-30": datetime(2026, 11, 30, 23, 30, tzinfo=NYC),
        "nyc-early-1": datetime(2026, 12, 1, 0, 5, tzinfo=NYC),
        "nyc-afternoon-1": datetime(2026, 12, 1, 16, 45, 43, tzinfo=NYC),  # 2 Dec in Istanbul
        "nyc-late-1": datetime(2026, 12, 1, 23, 55, tzinfo=NYC),
        "nyc-early-2": datetime(2026, 12, 2, 0, 1, tzinfo=NYC),
    }
    for index, (name, started) in enumerate(starts.items()):
        entry = _add(state, index, caller="05321234567", pbx=name[:3], started=started)
        starts[name] = entry.started_at
    return starts


def test_a_day_is_each_pbx_wall_clock_with_two_zones(state: State) -> None:
    starts = _two_pbx_day(state)
    names = list(starts)
    plan = TWO_COUNTRIES

    def day(text: str) -> set[str]:
        query = parse_search({"from": text, "to": text}, plan, default_limit=500)
        return {names[int(key[2:5])] for key in _keys(state, query)}

    assert day("2026-11-30") == {"ist-late-30", "nyc-late-30"}
    assert day("2026-12-01") == {"ist-early-1", "ist-late-1", "nyc-early-1", "nyc-afternoon-1",
                                 "nyc-late-1"}  # fmt: skip
    assert day("2026-12-02") == {"ist-early-2", "nyc-early-2"}
    # Time of day: from <= start < to, at each PBX's wall clock.
    query = parse_search({"from": "2026-12-01T14:00", "to": "2026-12-01T18:00"}, plan,
                         default_limit=500)  # fmt: skip
    assert {names[int(k[2:5])] for k in _keys(state, query)} == {"nyc-afternoon-1"}
    query = parse_search({"from": "2026-12-01 00:10", "to": "2026-12-01T00:10:01"}, plan,
                         default_limit=500)  # fmt: skip
    assert {names[int(k[2:5])] for k in _keys(state, query)} == {"ist-early-1"}
    # Ordered by the real instant, newest first.
    page = state.catalogue.search(parse_search({}, plan, default_limit=500))
    instants = [entry.started_at.timestamp() for entry in page.items]
    assert instants == sorted(instants, reverse=True)


def test_sort_and_numbered_pages(state: State) -> None:
    for index in range(23):
        _add(state, index, caller=f"0532{index:07d}", duration_s=(index * 7) % 23)
    plan = DialPlan()

    def keys(**params: str) -> list[str]:
        query = parse_search(params, plan, default_limit=5)
        return [entry.object_key for entry in state.catalogue.search(query).items]

    by_duration = keys(sort="duration", order="asc", limit="23")
    durations = {f"k/{i:03d}.mp3": (i * 7) % 23 for i in range(23)}
    assert [durations[k] for k in by_duration] == sorted(durations.values())
    assert keys(sort="caller", order="desc", limit="3") == ["k/022.mp3", "k/021.mp3", "k/020.mp3"]
    assert keys(sort="callee", order="asc", page="1")  # one callee: ties newest first
    pages = [keys(page=str(n)) for n in (1, 2, 3, 4, 5)]
    assert [len(p) for p in pages] == [5, 5, 5, 5, 3]
    flat = [key for page in pages for key in page]
    assert flat == [f"k/{i:03d}.mp3" for i in range(22, -1, -1)]  # every row once, newest first
    page = state.catalogue.search(parse_search({"page": "3"}, plan, default_limit=5))
    assert page.total == 23 and not page.total_capped
    assert keys(page="9") == []  # past the end: an empty page, the total still says 23


def test_the_total_stops_counting_at_the_cap(state: State) -> None:
    db: Db = state.catalogue._db  # bulk rows, as the bench writes them
    rows: list[list[Param]] = []
    for index in range(COUNT_CAP + 5):
        rows.append([f"k/{index}", f"r/{index}", "ist", "t", "100", "200", "100", "200",
                     "2026-12-01T10:00:00+03:00", 1796112000 + index, 30, 1, None, None,
                     f"n{index}", 0.0, "100", "200", 1796122800 + index])  # fmt: skip
    db.executemany(_INSERT_ROWS, rows)
    page = state.catalogue.search(SearchQuery(limit=10))
    assert page.total == COUNT_CAP and page.total_capped


@pytest.fixture
def crowded(state: State) -> tuple[State, list[tuple[str, str, str, int, int, int]]]:
    """21,600 calls over three days at two PBXs (Istanbul UTC+3, New York UTC-5), one every
    12 s, from 300 numbers (ties in every sort column): more matches than COUNT_CAP in a
    two-and-a-half-day search. Also returned as (key, caller, callee, duration, utc, wall)."""
    rng = random.Random(11)
    callers = [f"90532{rng.randrange(10**7):07d}" for _ in range(300)]
    rows: list[list[Param]] = []
    kept: list[tuple[str, str, str, int, int, int]] = []
    for index in range(21_600):
        pbx, offset_s = ("nyc", -5 * 3600) if index % 3 == 0 else ("ist", 3 * 3600)
        utc_s = 1796083200 + index * 12  # 2026-12-01T00:00Z onwards
        caller, callee = rng.choice(callers), str(rng.randrange(100, 110))
        duration_s = rng.randrange(5, 60)
        key = f"k/{rng.randrange(10**9):09d}/{index}"
        rows.append([key, f"r/{index}", pbx, "t", caller, callee, caller, callee,
                     "2026-12-01T10:00:00+03:00", utc_s, duration_s, 1, None, None, f"n{index}",
                     0.0, caller, callee, utc_s + offset_s])  # fmt: skip
        kept.append((key, caller, callee, duration_s, utc_s, utc_s + offset_s))
    db: Db = state.catalogue._db
    db.executemany(_INSERT_ROWS, rows)
    db.execute("ANALYZE")
    return state, kept


@pytest.mark.parametrize("order", ["asc", "desc"])
@pytest.mark.parametrize(("sort", "column"), [("caller", 1), ("callee", 2), ("duration", 3)])
@pytest.mark.parametrize(
    ("until", "walks_at_page_150"),
    [(datetime(2026, 12, 3, 18), True), (datetime(2026, 12, 2, 16), False)],
    ids=["60h", "34h"],
)
def test_pages_past_the_cap_sorted_by_a_column_match_a_full_sort(
    crowded: tuple[State, list[tuple[str, str, str, int, int, int]]],
    sort: str,
    column: int,
    order: str,
    until: datetime,
    walks_at_page_150: bool,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Past COUNT_CAP matches a page sorted by a party or the duration walks that column's
    # index when that reads fewer entries than sorting the range (see Catalogue.search): 60 of
    # the archive's 72 hours always; 34 hours (10,200 calls) on the first pages, not on page
    # 150. Either way the pages must be the very same as a full sort's.
    state, rows = crowded
    catalogue = state.catalogue
    walked: list[bool] = []
    where = catalogue._where

    def spy(query: SearchQuery, *, walk: bool = False) -> tuple[str, list[Param]]:
        walked.append(walk)
        return where(query, walk=walk)

    monkeypatch.setattr(catalogue, "_where", spy)
    since = datetime(2026, 12, 1, 6)
    low = int((since - datetime(1970, 1, 1)).total_seconds())
    high = int((until - datetime(1970, 1, 1)).total_seconds())
    matching = [row for row in rows if low <= row[5] < high]
    matching.sort(key=lambda row: (row[column], row[4], row[0]), reverse=order == "desc")
    assert len(matching) > COUNT_CAP
    for page in (1, 3, 150):
        walked.clear()
        query = SearchQuery(local_since=since, local_until=until, sort=sort, order=order)
        found = catalogue.search(replace(query, page=page, limit=50))
        assert found.total_capped
        expected = [row[0] for row in matching[(page - 1) * 50 : page * 50]]
        assert [entry.object_key for entry in found.items] == expected, page
        assert walked[-1] is (page < 150 or walks_at_page_150), (page, walked)


@pytest.mark.parametrize(
    ("params", "code"),
    [
        ({"from": "17.11.2016"}, "date"),
        ({"to": "2026-13-01"}, "date"),
        ({"from": "2026-12-01T25:00"}, "date"),
        ({"from": "2026-12-02", "to": "2026-12-01"}, "to_before_from"),
        ({"from": "2026-12-01T14:00", "to": "2026-12-01T14:00"}, "to_before_from"),
        ({"page": "0"}, "whole_number"),
        ({"page": "-1"}, "whole_number"),
        ({"page": "99999999999999999999"}, "whole_number"),
        ({"sort": "evil"}, "choice"),
        ({"order": "sideways"}, "choice"),
        ({"direction": "up"}, "choice"),
        ({"limit": "501"}, "whole_number"),
        ({"number": "0532abc"}, "number"),
        ({"page": "500"}, "page"),  # beyond 10,000 rows deep
        ({"cursor": "MTIzNDU2Nzg5MDEyMzQ1Njc4OTAxMjM0NTY6aw"}, "cursor"),  # a 26-digit time
        ({"cursor": "x", "sort": "duration"}, "cursor"),
    ],
)
def test_malformed_values_say_what_to_fix(state: State, params: dict[str, str], code: str) -> None:
    with pytest.raises(InvalidQuery) as raised:
        query = parse_search(params, DialPlan(), default_limit=50)
        state.catalogue.search(query)
    assert raised.value.code == code and raised.value.reason


@pytest.mark.parametrize(
    "params",
    [
        {"to": "9999-12-31"},
        {"from": "9999-12-31", "to": "9999-12-31"},
        {"from": "0001-01-01"},
        {"from": "0001-01-01", "to": "9999-12-31T23:59"},
    ],
)
def test_far_but_valid_dates_answer(state: State, params: dict[str, str]) -> None:
    _add(state, 1, caller="05321234567")
    page = state.catalogue.search(parse_search(params, DialPlan(), default_limit=50))
    assert page.total in (0, 1)


# Every filter alone, over an index: never a scan of the catalogue (issue 19, item 10). (A
# minimum duration alone is read along the time index, newest first, until a page is full.)
FILTERS = [
    SearchQuery(dial_status="x"),
    SearchQuery(trunk="x"),
    SearchQuery(pbx="x"),
    SearchQuery(number="0532"),
    SearchQuery(number="5127222"),
    SearchQuery(number="12"),
    SearchQuery(local_since=datetime(2026, 12, 1), local_until=datetime(2026, 12, 2)),
    SearchQuery(since=datetime(2026, 12, 1, tzinfo=IST), until=datetime(2026, 12, 2, tzinfo=IST)),
]


_INSERT_ROWS = (
    "INSERT INTO catalogue (object_key, recording_key, pbx, trunk, caller, callee,"
    " caller_number, callee_number, started_local, started_utc_s, duration_s, size_bytes,"
    " dial_status, autocall_id, source_name, archived_at_s, caller_digits, callee_digits,"
    " started_wall_s) VALUES (" + ", ".join("?" * 19) + ")"
)


@pytest.fixture
def analysed(state: State) -> State:
    """3,000 rows as a real archive has them (many numbers, a few extensions, trunks, PBXs
    and dial statuses), with the planner's statistics."""
    rng = random.Random(7)
    rows: list[list[Param]] = []
    for index in range(3000):
        caller = f"9053{rng.randrange(10**8):08d}"
        callee = str(rng.randrange(100, 200))
        started_s = 1790000000 + index * 600
        rows.append([f"k/{index}", f"r/{index}", rng.choice(["ist", "nyc"]), f"t{index % 4}",
                     caller, callee, caller, callee, "2026-12-01T10:00:00+03:00", started_s,
                     rng.randrange(5, 900), 1, rng.choice([None, None, "ANSWERED", "BUSY"]),
                     None, f"n{index}", 0.0, caller, callee, started_s + 10800])  # fmt: skip
    db: Db = state.catalogue._db
    db.executemany(_INSERT_ROWS, rows)
    db.execute("ANALYZE")
    return state


@pytest.mark.parametrize("query", FILTERS, ids=lambda q: repr(q)[12:60])
def test_every_filter_is_served_by_an_index(analysed: State, query: SearchQuery) -> None:
    catalogue = analysed.catalogue
    db: Db = catalogue._db
    where, values = catalogue._where(query)
    statement = (
        f"SELECT object_key FROM catalogue WHERE {where}"
        " ORDER BY started_utc_s DESC, object_key DESC LIMIT 51"
    )
    if db.dialect == "sqlite":
        plan = " | ".join(str(row[-1]) for row in db.execute(
            f"EXPLAIN QUERY PLAN {statement}", values).rows)  # fmt: skip
        assert re.search(r"SCAN catalogue\b(?!_parties)", plan) is None, plan
    else:
        # Without a usable index PostgreSQL scans anyway; with one, it must take it.
        _, explained = db.transaction(
            [("SET LOCAL enable_seqscan = off", []), (f"EXPLAIN {statement}", values)]
        )
        plan = " | ".join(str(row[0]) for row in explained.rows)
        assert "Seq Scan on catalogue" not in plan, plan
