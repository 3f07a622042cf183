"""Scopes (archiver.scope): extension ranges as written in the configuration, and the catalogue
finding exactly the calls a scope holds, on SQLite and PostgreSQL (the SQL and `Scope.holds`
agree, checked on many random calls and scopes)."""

from __future__ import annotations

import random
from dataclasses import replace
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from archiver.names import parse_name
from archiver.scope import WHOLE, ExtensionRange, InvalidScope, Scope
from archiver.state.api import State
from archiver.state.catalogue import SearchQuery, catalogue_entry

IST = ZoneInfo("Europe/Istanbul")
NAME = "20260315-101500-100-903123320404-1773558900.11-42.gsm"


def test_ranges_hold_both_ends_and_only_their_digits() -> None:
    team = ExtensionRange.parse("100-199")
    assert team.contains("100") and team.contains("199") and team.contains("150")
    assert not team.contains("99") and not team.contains("200") and not team.contains("1000")
    assert not team.contains("1a0") and not team.contains("+150") and not team.contains("")
    mixed = ExtensionRange.parse("90-110")
    assert [p for p in ("89", "90", "99", "100", "110", "111", "095") if mixed.contains(p)] == [
        "90", "99", "100", "110"]  # fmt: skip
    padded = ExtensionRange.parse("0100-0199")
    assert padded.contains("0150") and not padded.contains("150")
    assert ExtensionRange.parse("105").contains("105") and str(ExtensionRange.parse("105")) == "105"


@pytest.mark.parametrize(
    ("text", "why"),
    [("1OO-199", "digits"), ("199-100", "above"), ("", "digits"), ("01-100", "leading zero"),
     ("100-", "digits"), ("1-2-3", "digits")],
)  # fmt: skip
def test_malformed_ranges_are_named(text: str, why: str) -> None:
    with pytest.raises(InvalidScope, match=why):
        ExtensionRange.parse(text)


def test_a_scope_needs_both_parts_and_empty_lists_are_refused() -> None:
    scope = Scope.parse(pbx=["istanbul"], extensions=["100-199"])
    assert scope.holds("istanbul", "150", "905321234567")
    assert scope.holds("istanbul", "905321234567", "199")
    assert not scope.holds("ankara", "150", "905321234567")
    assert not scope.holds("istanbul", "250", "905321234567")
    assert WHOLE.holds("any", "", "") and WHOLE.whole
    with pytest.raises(InvalidScope, match="no call"):
        Scope.parse(pbx=[])
    with pytest.raises(InvalidScope, match="no call"):
        Scope.parse(extensions=[])
    assert scope.describe() == "pbx istanbul; extensions 100-199"


PARTIES = ["100", "150", "199", "200", "99", "1000", "0150", "1a0", "2+0", "", "905321234567",
           "105", "15", "110"]  # fmt: skip


def test_the_catalogue_finds_exactly_what_the_scope_holds(state: State) -> None:
    rng = random.Random(21)
    template = catalogue_entry(parse_name("pbx", "t", NAME, IST), object_key="k", size_bytes=1)
    calls = {}
    base = datetime(2026, 3, 1, tzinfo=IST)
    for index in range(150):
        pbx, caller, callee = rng.choice(["istanbul", "ankara"]), *rng.sample(PARTIES, 2)
        key = f"k/{index:03d}.mp3"
        state.catalogue.upsert(replace(
            template, object_key=key, recording_key=f"r/{index}", pbx=pbx, caller=caller,
            callee=callee, started_at=base + timedelta(minutes=index)))  # fmt: skip
        calls[key] = (pbx, caller, callee)
    texts = ["100-199", "105", "90-110", "0100-0199", "1000-1999", "15"]
    for _ in range(25):
        scope = Scope.parse(
            pbx=rng.choice([None, ["istanbul"], ["istanbul", "ankara"]]),
            extensions=rng.choice([None, rng.sample(texts, rng.randint(1, 3))]),
        )
        expected = {key for key, call in calls.items() if scope.holds(*call)}
        query = SearchQuery(scope=scope, limit=500)
        page = state.catalogue.search(query)
        assert page.total == len(expected), scope
        assert {item.object_key for item in page.items} == expected, scope
        for key in rng.sample(sorted(calls), 10):
            found = state.catalogue.get(key, scope=scope)
            assert (found is not None) == (key in expected), (key, scope)
