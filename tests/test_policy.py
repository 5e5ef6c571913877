"""The text-back policy: who gets a text, which template, when it goes out, and the recheck before sending."""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime, timedelta, timezone
from zoneinfo import ZoneInfo

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from textbackd.config import parse
from textbackd.core.model import Call, Direction, Outcome
from textbackd.decide.policy import (
    REASONS,
    History,
    Pending,
    SkipDecision,
    TextDecision,
    decide,
    destination,
    line_for,
    number_prefix,
    recheck,
)

NY = ZoneInfo("America/New_York")
UTC = timezone.utc
CALLER = "+12125550101"
DID = "+12125550100"


def ny(*args: int) -> datetime:
    return datetime(*args, tzinfo=NY)


# Monday 23 Nov 2026, 10:00 in New York (EST, UTC-5): the office is open.
MON_10 = ny(2026, 11, 23, 10, 0)

BASE = {
    "business": {
        "name": "Apex Plumbing",
        "timezone": "America/New_York",
        "booking_link": "https://apex.example/book",
        "contact": "(212) 555-0100",
        "hours": {
            "mon": "08:00-18:00",
            "tue": "08:00-18:00",
            "wed": "08:00-18:00",
            "thu": "08:00-18:00",
            "fri": "08:00-12:00,13:00-17:00",
            "sat": "09:00-13:00",
            "holidays": ["2026-12-25"],
        },
    },
    "senders": [
        {"name": "gw", "kind": "http", "url": "http://127.0.0.1:9/send", "from": "+12125550199", "body": {"to": "{to}"}},
    ],
    "messages": {
        "missed": "Hi {caller_name}, this is {business}. Sorry we missed your call. Book: {booking_link}",
        "after_hours": "Hi {caller_name}, {business} is closed. We'll call you back {next_open}.",
    },
    "lines": [
        {
            "did": "+12125550150",
            "name": "Apex Clinic",
            "missed": "{business} here 😊 we missed you, {caller_name}!",
            "booking_link": "https://clinic.example/b",
            "sender": "gw",
            "hours": {d: "00:00-24:00" for d in ("mon", "tue", "wed", "thu", "fri", "sat", "sun")},
        },
        {"did": "+12125550160", "enabled": False},
    ],
}

CONFIG = parse(BASE)


def cfg(**policy: object):
    return replace(CONFIG, policy=replace(CONFIG.policy, **policy))


def call(ended: datetime = MON_10, **kw: object) -> Call:
    fields: dict[str, object] = dict(
        id="1700000000.1",
        pbx="asterisk",
        direction=Direction.INBOUND,
        outcome=Outcome.NO_ANSWER,
        caller=CALLER,
        caller_raw=CALLER,
        caller_name="",
        did=DID,
        started=ended - timedelta(seconds=25),
        ended=ended,
        ring_seconds=20.0,
    )
    fields.update(kw)
    return Call(**fields)  # type: ignore[arg-type]


def at(c: Call, seconds: float = 5) -> datetime:
    return c.ended + timedelta(seconds=seconds)


# --------------------------------------------------------------------------------------
# skip reasons, one row per rule

SKIPS = [
    ("internal call", dict(direction=Direction.INTERNAL), History(), {}, "not_inbound"),
    ("outbound call", dict(direction=Direction.OUTBOUND), History(), {}, "not_inbound"),
    ("answered call", dict(outcome=Outcome.ANSWERED), History(), {}, "answered"),
    ("disabled line", dict(did="+12125550160"), History(), {}, "line_disabled"),
    ("outcome switched off", dict(outcome=Outcome.BUSY), History(), {"outcomes": ("no_answer",)}, "outcome_disabled"),
    (
        "voicemail left, switched off",
        dict(outcome=Outcome.VOICEMAIL, voicemail_left=True),
        History(),
        {"text_when_voicemail_left": False},
        "voicemail_left",
    ),
    ("instant hang-up", dict(ring_seconds=1.0), History(), {"min_ring_seconds": 3.0}, "min_ring"),
    (
        "IVR abandon counts the whole call, still too short",
        dict(outcome=Outcome.IVR_ABANDON, ring_seconds=0.0, started=MON_10 - timedelta(seconds=2)),
        History(),
        {"min_ring_seconds": 3.0},
        "min_ring",
    ),
    ("anonymous", dict(caller="anonymous", caller_raw="anonymous"), History(), {}, "withheld_number"),
    ("empty caller, <unknown> raw", dict(caller="", caller_raw="<unknown>"), History(), {}, "withheld_number"),
    ("3-digit extension", dict(caller="101", caller_raw="101"), History(), {}, "invalid_number"),
    ("too short", dict(caller="12345", caller_raw="12345"), History(), {}, "invalid_number"),
    ("US premium rate", dict(caller="+19005550123"), History(), {}, "number_type_premium_rate"),
    ("UK premium rate", dict(caller="+449090123456"), History(), {"allowed_countries": ("GB",)}, "number_type_premium_rate"),
    ("FR shared cost", dict(caller="+33884012345"), History(), {"allowed_countries": ("FR",)}, "number_type_shared_cost"),
    ("US toll free", dict(caller="+18005550123"), History(), {}, "number_type_toll_free"),
    ("our own line calls us", dict(caller="+12125550150"), History(), {}, "automated_sender"),
    ("our own sender number", dict(caller="+12125550199"), History(), {}, "automated_sender"),
    ("store says automated", {}, History(automated_sender=True), {}, "automated_sender"),
    ("Jamaica is +1 but not US", dict(caller="+18765550123"), History(), {}, "country_not_allowed"),
    ("Dominican Republic +1 809", dict(caller="+18095550123"), History(), {}, "country_not_allowed"),
    ("UK mobile, US only", dict(caller="+447400123456"), History(), {}, "country_not_allowed"),
    ("UK mobile dialled with 00", dict(caller="00447400123456", caller_raw="00447400123456"), History(), {}, "country_not_allowed"),
    ("blocked exactly", {}, History(), {"block": ("(212) 555-0101",)}, "blocked"),
    ("blocked by prefix", {}, History(), {"block": ("+1212555*",)}, "blocked"),
    ("not on the allow list", {}, History(), {"allow": ("+12125550102",)}, "not_allowed"),
    ("opted out", {}, History(opted_out=True), {}, "opted_out"),
    (
        "answered callback after the miss",
        {},
        History(last_answered_contact_at=MON_10 + timedelta(seconds=3)),
        {},
        "answered_callback",
    ),
    ("answered call up right now", {}, History(answered_call_active=True), {}, "answered_callback"),
    ("text already scheduled", {}, History(pending_textback=True), {}, "duplicate"),
    ("scheduled text counts even with dedupe off", {}, History(pending_textback=True), {"dedupe_hours": 0}, "duplicate"),
    ("texted 23 h ago", {}, History(last_textback_at=MON_10 - timedelta(hours=23)), {}, "duplicate"),
    ("they texted us 2 h ago", {}, History(last_inbound_text_at=MON_10 - timedelta(hours=2)), {}, "conversation_open"),
    ("number cap", {}, History(texts_to_number_24h=3), {"dedupe_hours": 0}, "cap_number"),
    ("prefix cap", {}, History(texts_to_prefix_1h=10), {}, "cap_prefix"),
    ("global cap", {}, History(texts_global_1h=120), {}, "cap_global"),
]


@pytest.mark.parametrize("name,fields,history,policy,reason", SKIPS, ids=[s[0] for s in SKIPS])
def test_skip_reasons(name: str, fields: dict, history: History, policy: dict, reason: str) -> None:
    """Each rule skips its call with its own stable reason."""
    c = call(**fields)
    d = decide(c, history, cfg(**policy), at(c))
    assert d == SkipDecision(reason, d.detail)
    assert reason in REASONS


def test_too_old_call() -> None:
    """A call decided more than max_age_minutes after it ended is dropped as too_old."""
    c = call()
    assert decide(c, History(), cfg(max_age_minutes=120), c.ended + timedelta(minutes=121)) == SkipDecision("too_old")
    assert isinstance(decide(c, History(), cfg(max_age_minutes=120), c.ended + timedelta(minutes=119)), TextDecision)


def test_country_detail_names_the_real_region() -> None:
    """A refused Caribbean number says its real region in the detail."""
    d = decide(call(caller="+18765550123"), History(), CONFIG, at(call()))
    assert d == SkipDecision("country_not_allowed", "JM")


TEXTS = [
    ("plain missed call", {}, History(), {}, CALLER),
    ("voicemail left, default on", dict(outcome=Outcome.VOICEMAIL, voicemail_left=True), History(), {}, CALLER),
    ("long enough ring", dict(ring_seconds=3.0), History(), {"min_ring_seconds": 3.0}, CALLER),
    (
        "IVR abandon after 10 s passes min_ring",
        dict(outcome=Outcome.IVR_ABANDON, ring_seconds=0.0, started=MON_10 - timedelta(seconds=10)),
        History(),
        {"min_ring_seconds": 3.0},
        CALLER,
    ),
    ("national format caller", dict(caller="(212) 555-0101", caller_raw="2125550101"), History(), {}, CALLER),
    ("00 international prefix", dict(caller="0012125550101", caller_raw="0012125550101"), History(), {}, CALLER),
    ("Jamaica allowed", dict(caller="+18765550123"), History(), {"allowed_countries": ("US", "JM")}, "+18765550123"),
    ("UK mobile allowed", dict(caller="+447400123456"), History(), {"allowed_countries": ("GB",)}, "+447400123456"),
    ("on the allow list", {}, History(), {"allow": ("2125550101",)}, CALLER),
    ("texted 25 h ago", {}, History(last_textback_at=MON_10 - timedelta(hours=25)), {}, CALLER),
    ("dedupe off", {}, History(last_textback_at=MON_10 - timedelta(hours=1)), {"dedupe_hours": 0}, CALLER),
    ("old conversation", {}, History(last_inbound_text_at=MON_10 - timedelta(hours=25)), {}, CALLER),
    ("answered contact before the miss", {}, History(last_answered_contact_at=MON_10 - timedelta(minutes=5)), {}, CALLER),
    ("caps just below", {}, History(texts_to_number_24h=2, texts_to_prefix_1h=9, texts_global_1h=119), {}, CALLER),
]


@pytest.mark.parametrize("name,fields,history,policy,to", TEXTS, ids=[t[0] for t in TEXTS])
def test_texts(name: str, fields: dict, history: History, policy: dict, to: str) -> None:
    """Calls that pass every rule get a text to the caller's E.164 number after the grace delay."""
    c = call(**fields)
    d = decide(c, history, cfg(**policy), at(c))
    assert isinstance(d, TextDecision), d
    assert d.to == to
    assert d.send_at == c.ended + timedelta(seconds=30)


def test_missed_text_in_hours() -> None:
    """A call in opening hours gets the missed template with business, link and a tidy greeting."""
    d = decide(call(caller_name="WIRELESS CALLER"), History(), CONFIG, at(call()))
    assert isinstance(d, TextDecision)
    assert d.text == "Hi, this is Apex Plumbing. Sorry we missed your call. Book: https://apex.example/book"
    assert (d.template, d.after_hours, d.deferred, d.encoding, d.segments) == ("missed", False, False, "gsm7", 1)
    assert (d.line_did, d.sender) == (DID, "")


def test_caller_name_greeting() -> None:
    """A CNAM LAST,FIRST name greets the caller by first name."""
    d = decide(call(caller_name="GARCIA,MARIA"), History(), CONFIG, at(call()))
    assert isinstance(d, TextDecision)
    assert d.text.startswith("Hi Maria, this is Apex Plumbing.")


def test_grace_setting() -> None:
    """send_at is the end of the call plus grace_seconds."""
    c = call()
    d = decide(c, History(), cfg(grace_seconds=0), c.ended)
    assert isinstance(d, TextDecision) and d.send_at == c.ended
    d = decide(c, History(), cfg(grace_seconds=90), c.ended)
    assert isinstance(d, TextDecision) and d.send_at == c.ended + timedelta(seconds=90)


def test_second_missed_call_within_grace_gets_no_second_text() -> None:
    """Two missed calls within the grace: the first is scheduled, the second is a duplicate."""
    first = call(ended=MON_10)
    d1 = decide(first, History(), CONFIG, at(first))
    assert isinstance(d1, TextDecision)
    second = call(ended=MON_10 + timedelta(seconds=20), id="1700000000.2")
    d2 = decide(second, History(pending_textback=True, texts_to_number_24h=1), CONFIG, at(second))
    assert d2 == SkipDecision("duplicate")


# --------------------------------------------------------------------------------------
# business hours, quiet hours, holidays, DST

TIMES = [
    # (name, call ended, template, send_at, text ends with)
    ("Monday 10:00 open", ny(2026, 11, 23, 10, 0), "missed", ny(2026, 11, 23, 10, 0, 30), None),
    (
        "Monday 19:00 closed, before quiet",
        ny(2026, 11, 23, 19, 0),
        "after_hours",
        ny(2026, 11, 23, 19, 0, 30),
        "We'll call you back tomorrow at 8:00 AM.",
    ),
    (
        "Monday 22:00 quiet: deferred to 08:00, said from 08:00",
        ny(2026, 11, 23, 22, 0),
        "after_hours",
        ny(2026, 11, 24, 8, 0),
        "We'll call you back at 8:00 AM today.",
    ),
    (
        "Tuesday 06:00 quiet: deferred to 08:00 the same day",
        ny(2026, 11, 24, 6, 0),
        "after_hours",
        ny(2026, 11, 24, 8, 0),
        "We'll call you back at 8:00 AM today.",
    ),
    (
        "Friday lunch break",
        ny(2026, 11, 27, 12, 30),
        "after_hours",
        ny(2026, 11, 27, 12, 30, 30),
        "We'll call you back at 1:00 PM today.",
    ),
    (
        "Saturday afternoon, open Monday",
        ny(2026, 11, 28, 14, 0),
        "after_hours",
        ny(2026, 11, 28, 14, 0, 30),
        "We'll call you back Monday at 8:00 AM.",
    ),
    (
        "Christmas Day (a Friday) is a holiday",
        ny(2026, 12, 25, 10, 0),
        "after_hours",
        ny(2026, 12, 25, 10, 0, 30),
        "We'll call you back tomorrow at 9:00 AM.",
    ),
    (
        "Christmas Eve 17:59:59 is still open",
        ny(2026, 12, 24, 17, 59, 59),
        "missed",
        ny(2026, 12, 24, 18, 0, 29),
        None,
    ),
    (
        "DST ends: Sat 31 Oct 22:00 EDT waits for Sun 08:00 EST",
        ny(2026, 10, 31, 22, 0),
        "after_hours",
        datetime(2026, 11, 1, 13, 0, tzinfo=UTC),
        "We'll call you back tomorrow at 8:00 AM.",
    ),
    (
        "DST starts: Sat 13 Mar 23:00 EST waits for Sun 08:00 EDT",
        ny(2027, 3, 13, 23, 0),
        "after_hours",
        datetime(2027, 3, 14, 12, 0, tzinfo=UTC),
        "We'll call you back tomorrow at 8:00 AM.",
    ),
]


@pytest.mark.parametrize("name,ended,template,send_at,tail", TIMES, ids=[t[0] for t in TIMES])
def test_hours_and_quiet(name: str, ended: datetime, template: str, send_at: datetime, tail: str | None) -> None:
    """Opening hours pick the template; quiet hours defer after-hours texts to quiet_end local time."""
    c = call(ended=ended, caller_name="NEW YORK NY")
    d = decide(c, History(), CONFIG, at(c))
    assert isinstance(d, TextDecision), d
    assert d.template == template
    assert d.after_hours is (template == "after_hours")
    assert d.send_at == send_at
    assert d.deferred is (send_at > ended + timedelta(seconds=30))
    if tail:
        assert d.text == "Hi, Apex Plumbing is closed. " + tail


def test_quiet_hours_send() -> None:
    """With quiet_hours = "send" an after-hours text at 22:00 goes out after the grace only."""
    c = call(ended=ny(2026, 11, 23, 22, 0))
    d = decide(c, History(), cfg(quiet_hours="send"), at(c))
    assert isinstance(d, TextDecision)
    assert (d.template, d.deferred, d.send_at) == ("after_hours", False, c.ended + timedelta(seconds=30))


def test_quiet_end_in_spring_forward_gap() -> None:
    """A quiet_end of 02:30 on the day 02:00-03:00 does not exist releases at 03:30 EDT."""
    c = call(ended=ny(2027, 3, 14, 1, 30))
    d = decide(c, History(), cfg(quiet_start=ny(2027, 1, 1, 21, 0).time(), quiet_end=ny(2027, 1, 1, 2, 30).time()), at(c))
    assert isinstance(d, TextDecision)
    assert d.send_at == datetime(2027, 3, 14, 7, 30, tzinfo=UTC)


def test_no_quiet_hours_when_start_equals_end() -> None:
    """quiet_start == quiet_end turns quiet hours off."""
    c = call(ended=ny(2026, 11, 23, 23, 0))
    t = ny(2027, 1, 1, 21, 0).time()
    d = decide(c, History(), cfg(quiet_start=t, quiet_end=t), at(c))
    assert isinstance(d, TextDecision) and not d.deferred


def test_decided_late_inside_quiet_hours() -> None:
    """A decision made after the grace, once quiet hours began, is deferred too."""
    c = call(ended=ny(2026, 11, 23, 20, 59, 50))
    d = decide(c, History(), CONFIG, ny(2026, 11, 23, 21, 5))
    assert isinstance(d, TextDecision)
    assert d.send_at == ny(2026, 11, 24, 8, 0)


# --------------------------------------------------------------------------------------
# lines


def test_line_identity_and_emoji() -> None:
    """A [[lines]] entry gives its own name, template, hours and sender; an emoji makes it UCS-2."""
    c = call(ended=ny(2026, 11, 23, 23, 0), did="+12125550150", caller_name="MARIA GARCIA")
    d = decide(c, History(), CONFIG, at(c))
    assert isinstance(d, TextDecision)
    assert d.text == "Apex Clinic here 😊 we missed you, Maria Garcia!"
    assert (d.template, d.after_hours, d.deferred) == ("missed", False, False)  # open 24h: no quiet hold
    assert (d.line_did, d.sender, d.encoding, d.segments) == ("+12125550150", "gw", "ucs2", 1)


def test_line_matched_by_national_did() -> None:
    """A PBX that gives the DID without +1 still finds its line."""
    assert line_for(CONFIG, "2125550150") is CONFIG.lines[0]
    assert line_for(CONFIG, "+12125550150") is CONFIG.lines[0]
    assert line_for(CONFIG, "s") is None
    d = decide(call(did="2125550150"), History(), CONFIG, at(call()))
    assert isinstance(d, TextDecision) and d.line_did == "+12125550150"


def test_line_inherits_messages() -> None:
    """A line without its own after-hours template uses messages.after_hours with the line's name."""
    data = {**BASE, "lines": [{"did": "+12125550170", "name": "Apex North"}]}
    c = call(ended=ny(2026, 11, 28, 14, 0), did="+12125550170")
    d = decide(c, History(), parse(data), at(c))
    assert isinstance(d, TextDecision)
    assert d.text == "Hi, Apex North is closed. We'll call you back Monday at 8:00 AM."


def test_long_emoji_template_segments() -> None:
    """A UCS-2 text over 70 code units is split in 67-unit segments."""
    data = {**BASE, "messages": {**BASE["messages"], "missed": "🙂" + "x" * 70}}
    d = decide(call(), History(), parse(data), at(call()))
    assert isinstance(d, TextDecision)
    assert (d.encoding, d.segments) == ("ucs2", 2)


# --------------------------------------------------------------------------------------
# recheck


def pending(ended: datetime = MON_10, send_at: datetime | None = None) -> Pending:
    return Pending(to=CALLER, call_ended=ended, send_at=send_at or ended + timedelta(seconds=30), created=ended)


RECHECKS = [
    ("nothing new", History(), {}, 31, None),
    ("opted out meanwhile", History(opted_out=True), {}, 31, "opted_out"),
    ("blocked since", History(), {"block": (CALLER,)}, 31, "blocked"),
    ("called back and answered", History(last_answered_contact_at=MON_10 + timedelta(seconds=20)), {}, 31, "answered_callback"),
    ("on an answered call right now", History(answered_call_active=True), {}, 31, "answered_callback"),
    ("answered before the miss", History(last_answered_contact_at=MON_10 - timedelta(seconds=20)), {}, 31, None),
    ("texted us meanwhile", History(last_inbound_text_at=MON_10 + timedelta(seconds=10)), {}, 31, "conversation_open"),
    ("another text went out", History(last_textback_at=MON_10 + timedelta(seconds=5)), {}, 31, "duplicate"),
    ("another text 2 h ago", History(last_textback_at=MON_10 - timedelta(hours=2)), {}, 31, "duplicate"),
    ("old text, dedupe off", History(last_textback_at=MON_10 - timedelta(hours=2)), {"dedupe_hours": 0}, 31, None),
    ("past max_age", History(), {}, 121 * 60 + 30, "too_old"),
]


@pytest.mark.parametrize("name,history,policy,after,reason", RECHECKS, ids=[r[0] for r in RECHECKS])
def test_recheck(name: str, history: History, policy: dict, after: float, reason: str | None) -> None:
    """Just before sending, a scheduled text is cancelled for its reason or sent (None)."""
    assert recheck(pending(), history, cfg(**policy), MON_10 + timedelta(seconds=after)) == reason


def test_recheck_deferred_text_is_not_too_old() -> None:
    """A text held by quiet hours counts max_age from its send time, not from the call."""
    p = pending(ended=ny(2026, 11, 23, 22, 0), send_at=ny(2026, 11, 24, 8, 0))
    assert recheck(p, History(), CONFIG, ny(2026, 11, 24, 8, 0, 5)) is None
    assert recheck(p, History(), CONFIG, ny(2026, 11, 24, 10, 1)) == "too_old"


def test_number_prefix() -> None:
    """The per-prefix cap groups numbers by all but their last 4 digits."""
    assert number_prefix("+12125550101") == "+1212555"
    assert number_prefix("+1") == "+1"


def test_decision_json() -> None:
    """Decisions serialise for replay with an action field."""
    d = decide(call(), History(), CONFIG, at(call()))
    assert d.to_json()["action"] == "text" and d.to_json()["send_at"] == "2026-11-23T15:00:30.000Z"
    assert SkipDecision("blocked").to_json() == {"action": "skip", "reason": "blocked", "detail": ""}


# --------------------------------------------------------------------------------------
# property

_times = st.datetimes(
    min_value=datetime(2000, 1, 1), max_value=datetime(2090, 1, 1), timezones=st.sampled_from([UTC, NY])
)
_numbers = st.one_of(
    st.from_regex(r"\+?1?212555\d{4}", fullmatch=True),
    st.text(max_size=20),
    st.sampled_from(["", "anonymous", "101", "+18765550123", "+19005550123", "00447400123456", "+12125550150"]),
    st.from_regex(r"\+?1?212555\d{4}", fullmatch=True),
)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    direction=st.one_of(st.just(Direction.INBOUND), st.sampled_from(list(Direction))),
    outcome=st.sampled_from(list(Outcome)),
    caller=_numbers,
    caller_raw=_numbers,
    caller_name=st.text(max_size=30),
    did=_numbers,
    started=_times,
    ended=_times,
    ring=st.floats(allow_nan=True, allow_infinity=True),
    vm=st.booleans(),
    lag=st.one_of(st.floats(min_value=0, max_value=600), st.floats(min_value=-3600, max_value=3 * 86400)),
    history=st.one_of(
        st.just(History()),
        st.builds(
            History,
            opted_out=st.booleans(),
            pending_textback=st.booleans(),
            last_answered_contact_at=st.none() | _times,
            texts_to_number_24h=st.integers(0, 5),
            texts_global_1h=st.integers(0, 200),
        ),
    ),
)
def test_decide_never_raises(direction, outcome, caller, caller_raw, caller_name, did, started, ended, ring, vm, lag, history) -> None:
    """For any call fields decide returns a skip with a known reason or a text due no earlier than the call's end."""
    c = Call(
        id="x",
        pbx="asterisk",
        direction=direction,
        outcome=outcome,
        caller=caller,
        caller_raw=caller_raw,
        caller_name=caller_name,
        did=did,
        started=started,
        ended=ended,
        ring_seconds=ring,
        voicemail_left=vm,
    )
    d = decide(c, history, CONFIG, ended + timedelta(seconds=lag))
    if isinstance(d, SkipDecision):
        assert d.reason in REASONS
    else:
        assert isinstance(d, TextDecision)
        assert d.send_at >= ended
        assert d.to.startswith("+") and d.text and d.segments >= 1


def test_block_and_allow_prefixes() -> None:
    """Block and allow entries ending in * match number prefixes, written with + or 00."""
    jm = call(caller="+18765550123")
    assert decide(jm, History(), cfg(allowed_countries=("US", "JM"), block=("+1876*",)), at(jm)) == SkipDecision("blocked")
    assert decide(jm, History(), cfg(allowed_countries=("US", "JM"), block=("001876*",)), at(jm)) == SkipDecision("blocked")
    d = decide(call(), History(), cfg(allow=("+1 212 555*",)), at(call()))
    assert isinstance(d, TextDecision)
    assert decide(jm, History(), cfg(allowed_countries=("US", "JM"), allow=("+1212*",)), at(jm)) == SkipDecision("not_allowed")


def test_no_opening_hours_configured() -> None:
    """Without opening hours every text uses the missed template, and quiet hours still hold night texts."""
    data = {**BASE, "business": {k: v for k, v in BASE["business"].items() if k != "hours"}}
    config = parse(data)
    day = call(ended=ny(2026, 11, 29, 14, 0))  # a Sunday
    d = decide(day, History(), config, at(day))
    assert isinstance(d, TextDecision) and (d.template, d.deferred) == ("missed", False)
    night = call(ended=ny(2026, 11, 29, 23, 0))
    d = decide(night, History(), config, at(night))
    assert isinstance(d, TextDecision)
    assert (d.template, d.send_at) == ("missed", ny(2026, 11, 30, 8, 0))


def test_destination_is_the_number_texted() -> None:
    """destination() names the number whose history decide() needs, even when only caller_raw has it."""
    assert destination(call(caller="", caller_raw="(212) 555-0101"), CONFIG) == CALLER
    assert destination(call(caller="0012125550101"), CONFIG) == CALLER
    assert destination(call(caller="anonymous", caller_raw="anonymous"), CONFIG) == ""
    assert destination(call(caller="+19005550123"), CONFIG) == ""
    c = call(caller="", caller_raw="2125550101")
    assert decide(c, History(pending_textback=True), CONFIG, at(c)) == SkipDecision("duplicate")


def test_readme_policy_example_parses() -> None:
    """The [policy]/[messages]/[[lines]] example in the README is a valid configuration."""
    import pathlib
    import re
    import tomllib

    readme = (pathlib.Path(__file__).parent.parent / "README.md").read_text()
    section = readme[readme.index("<!-- section: policy -->") :]
    data = tomllib.loads(re.search(r"```toml\n(.*?)```", section, re.S).group(1))
    data["business"] = {"name": "Apex", "timezone": "America/New_York"}
    data["senders"] = [{"name": "modem1", "kind": "modem", "device": "/dev/ttyUSB0"}]
    config = parse(data)
    assert config.policy.block == ("+12125550199", "+1876*")
    d = decide(call(did="+12125550150", caller_name="SMITH,JOHN"), History(), config, at(call()))
    assert isinstance(d, TextDecision) and d.text.startswith("Apex Dental here, sorry we missed you John!")
