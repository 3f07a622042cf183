"""The name parser against every form in pbx-api.md, and properties of what it accepts."""

from __future__ import annotations

import re
from datetime import UTC, date, datetime
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from archiver.names import InvalidName, parse_name, parse_path

IST = ZoneInfo("Europe/Istanbul")
ROOT = "/var/spool/asterisk/monitor/recording/"


def test_documented_find_line() -> None:
    rec = parse_path(
        "pbx",
        ROOT + "trunk-sip-903123320404/20161118-110332-100-903123320404-1479456211.1297-69.wav",
        IST,
    )
    assert rec.folder == "trunk-sip-903123320404"
    assert rec.day == date(2016, 11, 18)
    assert (rec.caller, rec.callee) == ("100", "903123320404")
    assert rec.uniqueid == "1479456211.1297"
    assert rec.duration_s == 69
    assert rec.extension == "wav"
    assert rec.started_at.isoformat() == "2016-11-18T11:03:32+03:00"
    assert rec.relative_path == (
        "recording/trunk-sip-903123320404/20161118-110332-100-903123320404-1479456211.1297-69.wav"
    )
    # The uniqueid's epoch is the same moment in UTC: the documented time-zone cross-check.
    assert abs(rec.uniqueid_epoch_s - rec.started_at.timestamp()) < 10


@pytest.mark.parametrize(
    ("name", "caller", "callee", "uniqueid", "ext"),
    [
        ("20161025-161938-100-903123320404-1477401578.25-4.gsm", "100", "903123320404",
         "1477401578.25", "gsm"),
        ("20161025-162048-903123320404-100-1477401638.35-15.gsm", "903123320404", "100",
         "1477401638.35", "gsm"),
        ("20161025-161938--903123320404-1477401578.25-4.gsm", "", "903123320404",
         "1477401578.25", "gsm"),
        ("20161025-161938-anonymous-100-1477401578.25-4.wav", "anonymous", "100",
         "1477401578.25", "wav"),
        ("20161025-161938-100-unknown-1477401578.25-4.WAV", "100", "unknown",
         "1477401578.25", "WAV"),
        ("20161025-161938-+903123320404-100-1477401578.25-4.wav49", "+903123320404", "100",
         "1477401578.25", "wav49"),
        ("20161025-161938-100-9031233204041234567890123-1477401578.25-4.gsm", "100",
         "9031233204041234567890123", "1477401578.25", "gsm"),
        ("20161025-161938-100-903123320404-pbx1-1477401578.25-4.gsm", "100", "903123320404",
         "pbx1-1477401578.25", "gsm"),
        ("20161025-161938-100--1477401578.25-0.wav", "100", "", "1477401578.25", "wav"),
    ],
)  # fmt: skip
def test_odd_but_valid_names(name: str, caller: str, callee: str, uniqueid: str, ext: str) -> None:
    rec = parse_name("pbx", "trunk-sip-908502591905", name, IST)
    assert (rec.caller, rec.callee, rec.uniqueid, rec.extension) == (caller, callee, uniqueid, ext)
    assert rec.name == name


def test_systemname_uniqueid_epoch() -> None:
    rec = parse_name("p", "t", "20161025-161938-100-200-pbx1-1477401578.25-4.gsm", IST)
    assert rec.uniqueid_epoch_s == 1477401578


@pytest.mark.parametrize(
    "line",
    [
        "",
        "README.txt",
        "core.1234",
        ROOT + "trunk/../../../etc/passwd",
        ROOT + "../20161118-110332-100-200-1479456211.1297-69.wav",
        ROOT + "a/b/20161118-110332-100-200-1479456211.1297-69.wav",
        ROOT + "..",
        "/etc/20161118-110332-100-200-1479456211.1297-69.wav",
        ROOT + "t/20161318-110332-100-200-1479456211.1297-69.wav",  # month 13
        ROOT + "t/20161118-250332-100-200-1479456211.1297-69.wav",  # hour 25
        ROOT + "t/20161118-110332-100-200-1479456211.1297-69.mp3",
        ROOT + "t/20161118-110332-10;rm -rf /-200-1479456211.1297-69.wav",
        ROOT + "t/20161118-110332-$(id)-200-1479456211.1297-69.wav",
        ROOT + "t/20161118-110332-100-200-1479456211.1297-69.wav\x00",
        ROOT + "t/20161118-110332-100-200-1479456211.1297-69.wav\x1b[2J",
        ROOT + "t/20161118-110332-\uff1100-200-1479456211.1297-69.wav",  # fullwidth digit
        ROOT + "t/20161118-110332-100-200-1479456211.1297-69.wav/",
        ROOT + "t/20161118 110332-100-200-1479456211.1297-69.wav",
        ROOT + "t/" + "9" * 10_000,
        ROOT + ".hidden/20161118-110332-100-200-1479456211.1297-69.wav",
        ROOT + "-rf/20161118-110332-100-200-1479456211.1297-69.wav",
        "<html><body>Login</body></html>",
    ],
)
def test_rejected_lines(line: str) -> None:
    with pytest.raises(InvalidName) as caught:
        parse_path("pbx", line, IST)
    assert caught.value.reason


def test_crlf_and_blanks_tolerated() -> None:
    rec = parse_path("p", ROOT + "t/20161118-110332-100-200-1479456211.1297-69.wav\r", IST)
    assert rec.name.endswith(".wav")


def test_started_at_follows_the_pbx_zone() -> None:
    tz = ZoneInfo("America/New_York")
    rec = parse_name("p", "t", "20160313-023000-100-200-1457854200.1-5.gsm", tz)
    # 02:30 on the spring-forward night does not exist in New York; zoneinfo picks fold=0,
    # which is still a well-defined instant we can key by.
    assert rec.started_at.tzinfo is tz
    assert rec.started_at.astimezone(UTC) == datetime(2016, 3, 13, 7, 30, tzinfo=UTC)


# --- properties: anything accepted is safe in a URL, a path and an S3 key -------------------

_UNSAFE = re.compile(r"[/\s\x00-\x1f\x7f;|&$`'\"<>(){}\[\]\\!?*~#%]|\.\.")

name_chars = st.text(alphabet=st.characters(codec="utf-8", exclude_categories=["Cs"]), max_size=80)
near_names = st.builds(
    lambda d, t, a, b, u, n, e: f"{d}-{t}-{a}-{b}-{u}-{n}.{e}",
    st.from_regex(r"[0-9]{8}", fullmatch=True),
    st.from_regex(r"[0-9]{6}", fullmatch=True),
    name_chars,
    name_chars,
    st.one_of(st.from_regex(r"[0-9]{10}\.[0-9]{1,4}", fullmatch=True), name_chars),
    st.one_of(st.integers(0, 9999).map(str), name_chars),
    st.sampled_from(["gsm", "wav", "WAV", "wav49", "mp3", "gsm/..", "wav;"]),
)


def _assert_safe(value: str) -> None:
    assert _UNSAFE.search(value) is None, value
    assert value.isascii() and value.isprintable()


@settings(max_examples=600, deadline=None)
@given(folder=st.one_of(st.just("trunk-sip-1"), name_chars), name=st.one_of(near_names, name_chars))
def test_accepted_names_carry_nothing_unsafe(folder: str, name: str) -> None:
    try:
        rec = parse_name("pbx", folder, name, IST)
    except InvalidName:
        return
    for value in (rec.folder, rec.name, rec.caller, rec.callee, rec.uniqueid):
        _assert_safe(value)
    assert rec.relative_path == f"recording/{rec.folder}/{rec.name}"


@settings(max_examples=300, deadline=None)
@given(line=name_chars)
def test_arbitrary_lines_never_crash(line: str) -> None:
    try:
        parse_path("pbx", line, IST)
    except InvalidName as error:
        assert error.reason
