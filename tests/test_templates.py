"""Templates: the caller-name rule, rendering with empty values, opening-hours phrases, check-config output."""

from __future__ import annotations

from datetime import date, datetime, time
from zoneinfo import ZoneInfo

import pytest

from textbackd.config import OpeningHours, parse
from textbackd.decide.templates import (
    compact_hours,
    describe,
    format_number,
    format_time,
    is_open,
    next_open_phrase,
    person_name,
    render,
    render_all,
)

NY = ZoneInfo("America/New_York")


def ny(*args: int) -> datetime:
    return datetime(*args, tzinfo=NY)


NAMES = [
    ("MARIA GARCIA", "Maria Garcia"),
    ("Maria Garcia", "Maria Garcia"),
    ("GARCIA,MARIA", "Maria"),
    ("Garcia, Maria L", "Maria"),
    ("O'BRIEN SEAN", "O'Brien Sean"),
    ("Jean-Luc Picard", "Jean-Luc Picard"),
    ("José Álvarez", "José Álvarez"),
    ("", ""),
    ("   ", ""),
    ("UNKNOWN", ""),
    ("Unknown Caller", ""),
    ("<unknown>", ""),
    ("WIRELESS CALLER", ""),
    ("CELL PHONE   NY", ""),
    ("TOLL FREE", ""),
    ("NEW YORK NY", ""),
    ("TORONTO ON", ""),
    ("2125550101", ""),
    ("+1 212-555-0101", ""),
    ("V12345678900", ""),
    ("APEX PLUMBING LLC", ""),
    ("anonymous", ""),
    ("J", ""),
    ("SPAM RISK", ""),
]


@pytest.mark.parametrize("raw,expected", NAMES)
def test_person_name(raw: str, expected: str) -> None:
    """Only caller ID names that look like a person are used, tidied for a greeting."""
    assert person_name(raw) == expected


RENDERS = [
    ("Hi {caller_name}, sorry we missed you.", "Maria", "Hi Maria, sorry we missed you."),
    ("Hi {caller_name}, sorry we missed you.", "", "Hi, sorry we missed you."),
    ("Hi {caller_name}! This is {business}.", "", "Hi! This is Apex."),
    ("Hello {caller_name} - {business} here", "", "Hello - Apex here"),
    ("{caller_name}, sorry we missed you.", "", "Sorry we missed you."),
    ("{caller_name}: {business} missed you.", "", "Apex missed you."),
    ("Thanks for calling. {caller_name}, we'll call back.", "", "Thanks for calling. We'll call back."),
    ("Thanks for calling {business}, {caller_name}.", "", "Thanks for calling Apex."),
    ("{{literal}} {caller_name}.", "", "{literal}."),
    ("We missed you, {caller_name}", "", "We missed you"),
    ("Hi {caller_name}: call {business}.", "Maria", "Hi Maria: call Apex."),
]


@pytest.mark.parametrize("template,name,expected", RENDERS)
def test_render_caller_name_rule(template: str, name: str, expected: str) -> None:
    """An empty {caller_name} is removed so the text still reads well."""
    assert render(template, {"business": "Apex", "caller_name": name}) == expected


def test_render_other_empty_values() -> None:
    """Any other empty value drops with the space before it; unknown keys count as empty."""
    assert render("Book online {booking_link} or call.", {}) == "Book online or call."


HOURS = OpeningHours(
    days=(
        ((time(8), time(18)),),
        ((time(8), time(18)),),
        ((time(8), time(18)),),
        ((time(8), time(18)),),
        ((time(8), time(12)), (time(13), time(17, 30))),
        ((time(9), time(13)),),
        (),
    ),
    holidays=(date(2026, 12, 25), date(2026, 12, 28)),
)

PHRASES = [
    ("Monday morning before opening", ny(2026, 11, 23, 6, 0), "at 8:00 AM today"),
    ("exactly at opening", ny(2026, 11, 23, 8, 0), "at 8:00 AM today"),
    ("Monday evening", ny(2026, 11, 23, 19, 0), "tomorrow at 8:00 AM"),
    ("Friday lunch", ny(2026, 11, 27, 12, 15), "at 1:00 PM today"),
    ("Friday evening", ny(2026, 11, 27, 18, 0), "tomorrow at 9:00 AM"),
    ("Saturday afternoon", ny(2026, 11, 28, 14, 0), "Monday at 8:00 AM"),
    ("Christmas Eve evening, holiday next", ny(2026, 12, 24, 19, 0), "Saturday at 9:00 AM"),
    ("Saturday 26 Dec, Monday 28 is a holiday", ny(2026, 12, 26, 14, 0), "Tuesday at 8:00 AM"),
    ("across the autumn DST change", ny(2026, 10, 31, 22, 0), "Monday at 8:00 AM"),
    ("across the spring DST change", ny(2027, 3, 13, 23, 0), "Monday at 8:00 AM"),
]


@pytest.mark.parametrize("name,ts,expected", PHRASES, ids=[p[0] for p in PHRASES])
def test_next_open_phrase(name: str, ts: datetime, expected: str) -> None:
    """{next_open} says the next opening in business local time, relative to the send time."""
    assert next_open_phrase(HOURS, ts, NY) == expected


def test_next_open_far_and_never() -> None:
    """Openings more than a week away give a date; no hours at all give a neutral phrase."""
    only_jan = OpeningHours(days=(((time(9), time(17)),),) + ((),) * 6, holidays=(date(2026, 11, 30), date(2026, 12, 7)))
    assert next_open_phrase(only_jan, ny(2026, 11, 24, 10, 0), NY) == "on Dec 14 at 9:00 AM"
    assert next_open_phrase(OpeningHours(), ny(2026, 11, 24, 10, 0), NY) == "as soon as we can"


def test_is_open() -> None:
    """Opening spans are half-open, holidays closed, and 24:00 reaches midnight."""
    assert is_open(HOURS, ny(2026, 11, 23, 8, 0), NY)
    assert not is_open(HOURS, ny(2026, 11, 23, 18, 0), NY)
    assert not is_open(HOURS, ny(2026, 12, 25, 10, 0), NY)
    allday = OpeningHours(days=(((time(0), time(23, 59, 59, 999999)),),) * 7)
    assert is_open(allday, ny(2026, 11, 23, 23, 59, 59, 999999), NY)


def test_compact_hours_and_time_formats() -> None:
    """{hours} groups days with the same spans; regions choose 12- or 24-hour times."""
    assert compact_hours(HOURS) == "Mon-Thu 8am-6pm, Fri 8am-12pm & 1pm-5:30pm, Sat 9am-1pm"
    assert compact_hours(HOURS, "GB") == "Mon-Thu 08:00-18:00, Fri 08:00-12:00 & 13:00-17:30, Sat 09:00-13:00"
    assert compact_hours(OpeningHours()) == "closed"
    allday = OpeningHours(days=(((time(0), time(23, 59, 59, 999999)),),) * 7)
    assert compact_hours(allday) == "Mon-Sun 24h"
    assert format_time(time(13, 5)) == "1:05 PM" and format_time(time(0, 0)) == "12:00 AM"
    assert format_time(time(13, 5), "DE") == "13:05"


def test_format_number() -> None:
    """{did} is national at home and international abroad."""
    assert format_number("+12125550100") == "(212) 555-0100"
    assert format_number("+442079460000") == "+44 20 7946 0000"
    assert format_number("s") == "s"


def test_describe_encodings() -> None:
    """describe() reports GSM-7 or UCS-2 with the segment count of the sms module."""
    assert (describe("Hi Maria").encoding, describe("Hi Maria").segments) == ("gsm7", 1)
    assert describe("x" * 161).segments == 2
    assert describe("€" * 80).segments == 1  # extension characters cost two septets
    assert (describe("Hi 😊").encoding, describe("😊" * 35).segments) == ("ucs2", 1)
    assert describe("😊" * 36).segments == 2


CONFIG = {
    "business": {
        "name": "Apex Plumbing",
        "timezone": "America/New_York",
        "hours": {"mon": "08:00-18:00"},
    },
    "messages": {"missed": "Hi {caller_name}, {business} 😊 book {booking_link}"},
    "lines": [{"did": "+12125550150", "name": "Apex Clinic", "booking_link": "https://c.example/b"}],
    "followups": [{"after": "2h", "text": "Still need help from {business}? " + "x" * 140}],
}


def test_render_all() -> None:
    """check-config gets every template rendered with encoding, segments and warnings."""
    out = {r.key: r for r in render_all(parse(CONFIG), ny(2026, 11, 23, 19, 0))}
    assert list(out) == [
        "messages.missed",
        "messages.after_hours",
        "messages.opt_out",
        "messages.opt_in",
        "messages.help",
        "lines[0].missed",
        "lines[0].after_hours",
        "followups[0].text",
    ]
    m = out["messages.missed"]
    assert m.text == "Hi Maria Garcia, Apex Plumbing 😊 book"
    assert (m.encoding, m.segments) == ("ucs2", 1)
    assert any("UCS-2 because of '😊'" in w for w in m.warnings)
    assert any("{booking_link} is empty" in w for w in m.warnings)
    line = out["lines[0].missed"]
    assert line.text == "Hi Maria Garcia, Apex Clinic 😊 book https://c.example/b"
    assert not any("booking_link" in w for w in line.warnings)
    assert "call you back on Nov 30 at 8:00 AM" in out["lines[0].after_hours"].text  # a week away: a date
    fu = out["followups[0].text"]
    assert fu.segments == 2 and fu.warnings[0].startswith("2 segments (GSM-7")
    assert out["messages.opt_out"].warnings == ()
    assert fu.to_json()["segments"] == 2
