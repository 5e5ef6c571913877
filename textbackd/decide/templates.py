"""Text templates: the placeholders, the caller-name rule, opening-hours phrases.

Pure: the time is always passed in (an aware ``datetime``); nothing here reads
a clock, a file or the store.

Placeholders (``config.TEMPLATE_FIELDS``): ``{business}`` (the line's name or
the business name), ``{caller_name}``, ``{booking_link}``, ``{hours}`` (compact
opening hours, e.g. ``Mon-Fri 8am-6pm, Sat 9am-1pm``), ``{next_open}`` (``at 1:00
PM today``, ``tomorrow at 8:00 AM``, ``Monday at 9:00 AM``, ``on Jan 5 at 9:00
AM``, relative to the time the text goes out), ``{contact}`` and ``{did}`` (the
number the caller dialled, formatted for people).

The caller-name rule: ``{caller_name}`` is filled only when the caller ID name
looks like a person (see ``person_name``). When it is not, the placeholder is
removed with the space before it, so ``"Hi {caller_name}, sorry"`` becomes
``"Hi, sorry"``; at the start of a sentence it is removed with the
punctuation after it and the next letter is capitalised, so ``"{caller_name},
sorry"`` becomes ``"Sorry"``. Any other empty placeholder is removed with the
space before it.
"""

from __future__ import annotations

import functools
import re
import string
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta, timezone
from typing import TYPE_CHECKING
from zoneinfo import ZoneInfo

from textbackd.core import sms

if TYPE_CHECKING:
    from textbackd.core.model import Contact
    from textbackd.core.settings import Config, LineConfig, OpeningHours

WEEKDAY_NAMES = ("Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday")
_SHORT_DAYS = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")
_END_OF_DAY = time(23, 59, 59, 999999)  # how config spells "24:00"

# Regions whose people read "8:00 AM" rather than "08:00".
_TWELVE_HOUR_REGIONS = frozenset({"US", "CA", "AU", "NZ", "PH", "IN", "PK", "BD", "EG", "SA", "MY", "JM", "PR"})

# --------------------------------------------------------------------------------------
# the caller-name rule

# Whole caller ID names that are not people.
_NOT_NAMES = frozenset(
    {
        "unknown",
        "unknown name",
        "unknown caller",
        "unavailable",
        "not available",
        "anonymous",
        "private",
        "private caller",
        "private number",
        "private name",
        "restricted",
        "withheld",
        "blocked",
        "no caller id",
        "no name",
        "name unavailable",
        "out of area",
        "out-of-area",
        "wireless caller",
        "cell phone",
        "mobile",
        "mobile caller",
        "toll free",
        "toll free call",
        "caller",
        "guest",
        "voip caller",
        "pay phone",
        "payphone",
        "spam risk",
        "scam likely",
        "telemarketer",
        "asterisk",
        "freeswitch",
        "default",
        "null",
        "none",
        "n/a",
    }
)
# Words that make a caller ID name a description, not a person.
_NOT_NAME_WORDS = frozenset(
    {
        "caller",
        "wireless",
        "cell",
        "cellular",
        "phone",
        "mobile",
        "unknown",
        "unavailable",
        "anonymous",
        "private",
        "restricted",
        "spam",
        "scam",
        "likely",
        "potential",
        "toll",
        "llc",
        "inc",
        "corp",
        "co",
        "ltd",
        "gmbh",
        "company",
        "services",
        "hospital",
        "clinic",
        "pharmacy",
        "voip",
        "fax",
    }
)
# US states, DC, territories and Canadian provinces: "NEW YORK NY", "TORONTO ON" are CNAM city names.
_PLACE_CODES = frozenset(
    "AL AK AZ AR CA CO CT DE FL GA HI ID IL IN IA KS KY LA ME MD MA MI MN MS MO MT NE NV NH NJ NM NY NC ND "
    "OH OK OR PA RI SC SD TN TX UT VT VA WA WV WI WY DC PR VI GU AS MP "
    "AB BC MB NB NL NS NT NU ON PE QC SK YT".split()
)
_NAME_CHARS = re.compile(r"^[^\W\d_]+(?:['’.\-][^\W\d_]*)*$")


def person_name(raw: str | None) -> str:
    """The name to greet a caller with, or ``""`` when the caller ID name is not a person's name.

    Refused: empty, anything with a digit (numbers, ``V123…``), ``<unknown>``
    and other markers, the generic CNAM labels (``UNKNOWN``, ``WIRELESS
    CALLER``, ``TOLL FREE``…), city/state CNAM (``NEW YORK NY``), business names
    (``… LLC``), single letters. CNAM's ``LAST,FIRST`` becomes ``First``; all-caps
    names are title-cased (``MARIA GARCIA`` → ``Maria Garcia``).
    """
    if not raw:
        return ""
    s = " ".join(raw.replace("\t", " ").split()).strip(" \"'")
    if not s or len(s) > 40 or any(ch.isdigit() for ch in s) or any(ch in s for ch in "<>@#*+=/\\:;!?()[]{}_|~^$%&"):
        return ""
    low = s.lower()
    if low in _NOT_NAMES:
        return ""
    if "," in s:  # CNAM "SMITH,JOHN" / "Smith, John A"
        last, _, first = s.partition(",")
        first_words = first.split()
        if not first_words or not last.strip():
            return ""
        s = first_words[0]
    words = s.split()
    if any(w.lower().strip(".") in _NOT_NAME_WORDS for w in words):
        return ""
    if not all(_NAME_CHARS.match(w) for w in words):
        return ""
    if len(words) >= 2 and s.isupper() and words[-1] in _PLACE_CODES:
        return ""
    if len(words) == 1 and len(words[0].strip(".")) < 2:
        return ""
    if s.isupper() or s.islower():
        s = " ".join(_title(w) for w in words)
    return s


def _title(word: str) -> str:
    # "O'BRIEN" → "O'Brien", "SMITH-JONES" → "Smith-Jones"
    return re.sub(r"[^\W\d_]+", lambda m: m.group(0).capitalize(), word.lower())


# --------------------------------------------------------------------------------------
# rendering

_SENTENCE_END = (".", "!", "?", "\n")


def render(template: str, values: dict[str, str]) -> str:
    """``template`` with its placeholders filled from ``values`` (missing keys count as empty).

    Empty values follow the rule in the module docstring so the text still
    reads well. Literal braces are written ``{{`` and ``}}`` as in ``str.format``.
    """
    out = ""
    sentence_start = False  # an empty {caller_name} opened a sentence: tidy what follows
    dangling = False  # an empty {caller_name} may have left "calling Apex, ." behind
    for literal, field_name, _spec, _conv in string.Formatter().parse(template):
        if dangling and out.endswith((",", ";", ":")) and (not literal or literal[0] in ".!?,;:\n"):
            out = out[:-1]
        dangling = False
        if sentence_start and literal:
            literal = _capitalize_first(literal.lstrip(",;:-–— \t"))
            if literal and out and not out.endswith("\n"):
                literal = " " + literal
            sentence_start = not literal
        out += literal
        if field_name is None:
            continue
        field_name, _, fallback = field_name.partition("|")  # {first_name|there} (issue 14)
        value = values.get(field_name, "") or fallback
        if value:
            if sentence_start:
                value = (" " if out and not out.endswith("\n") else "") + _capitalize_first(value)
                sentence_start = False
            out += value
            continue
        out = out.rstrip(" \t")
        if field_name == "caller_name":
            sentence_start = out == "" or out.endswith(_SENTENCE_END)
            dangling = not sentence_start
    if dangling and out.endswith((",", ";", ":")):
        out = out[:-1]
    return out.strip()


def _capitalize_first(s: str) -> str:
    for i, ch in enumerate(s):
        if ch.isalpha():
            return s[:i] + ch.upper() + s[i + 1 :]
        if not ch.isspace():
            return s
    return s


# --------------------------------------------------------------------------------------
# opening hours


def effective_hours(config: Config, line: LineConfig | None) -> OpeningHours:
    return line.hours if line is not None and line.hours is not None else config.business.hours


def _to_local(ts: datetime, tz: ZoneInfo) -> datetime:
    if ts.tzinfo is None:
        ts = ts.replace(tzinfo=timezone.utc)
    return ts.astimezone(tz)


def is_open(hours: OpeningHours, ts: datetime, tz: ZoneInfo) -> bool:
    """Whether ``ts`` falls in an opening span of its local day (holidays are closed)."""
    local = _to_local(ts, tz)
    if local.date() in hours.holidays:
        return False
    t = local.time().replace(tzinfo=None)
    for a, b in hours.days[local.weekday()]:
        if a <= t and (t < b or b == _END_OF_DAY):
            return True
    return False


def next_opening(hours: OpeningHours, ts: datetime, tz: ZoneInfo, *, horizon_days: int = 60) -> datetime | None:
    """The start of the next opening span at or after ``ts`` (aware, in ``tz``), or None."""
    local = _to_local(ts, tz)
    day = local.date()
    for i in range(horizon_days + 1):
        d = day + timedelta(days=i)
        if d in hours.holidays:
            continue
        for a, _b in hours.days[d.weekday()]:
            start = _local_instant(d, a, tz)
            if start >= local:
                return start
    return None


def _local_instant(d: date, t: time, tz: ZoneInfo) -> datetime:
    """Local wall time → aware datetime; a wall time skipped by DST lands after the jump."""
    aware = datetime.combine(d, t).replace(tzinfo=tz)
    # fold=0 reads a skipped wall time with the offset before the jump: 02:30 → 03:30 EDT.
    return aware.astimezone(timezone.utc).astimezone(tz)


def format_time(t: time, region: str = "US") -> str:
    """``8:00 AM`` in 12-hour regions, ``08:00`` elsewhere."""
    if region.upper() in _TWELVE_HOUR_REGIONS:
        h = t.hour % 12 or 12
        return f"{h}:{t.minute:02d} {'AM' if t.hour < 12 else 'PM'}"
    return f"{t.hour:02d}:{t.minute:02d}"


def next_open_phrase(hours: OpeningHours, ts: datetime, tz: ZoneInfo, region: str = "US") -> str:
    """When the office opens next, said from the point of view of ``ts``.

    ``at 1:00 PM today``, ``tomorrow at 8:00 AM``, ``Monday at 9:00 AM`` (within
    a week), ``on Jan 5 at 9:00 AM`` (later), ``as soon as we can`` (no hours).
    """
    nxt = next_opening(hours, ts, tz)
    if nxt is None:
        return "as soon as we can"
    today = _to_local(ts, tz).date()
    at = format_time(nxt.time(), region)
    days = (nxt.date() - today).days
    if days == 0:
        return f"at {at} today"
    if days == 1:
        return f"tomorrow at {at}"
    if days < 7:
        return f"{WEEKDAY_NAMES[nxt.weekday()]} at {at}"
    return f"on {nxt:%b} {nxt.day} at {at}"


def _compact_time(t: time, twelve: bool) -> str:
    if t == _END_OF_DAY:
        return "midnight" if twelve else "24:00"
    if not twelve:
        return f"{t.hour:02d}:{t.minute:02d}"
    h = t.hour % 12 or 12
    suffix = "am" if t.hour < 12 else "pm"
    return f"{h}{suffix}" if t.minute == 0 else f"{h}:{t.minute:02d}{suffix}"


def compact_hours(hours: OpeningHours, region: str = "US") -> str:
    """``Mon-Fri 8am-6pm, Sat 9am-1pm``: consecutive days with the same spans grouped; ``closed`` if none."""
    twelve = region.upper() in _TWELVE_HOUR_REGIONS
    groups: list[tuple[int, int, tuple]] = []
    for i, spans in enumerate(hours.days):
        if groups and groups[-1][2] == spans and groups[-1][1] == i - 1:
            groups[-1] = (groups[-1][0], i, spans)
        else:
            groups.append((i, i, spans))
    parts = []
    for a, b, spans in groups:
        if not spans:
            continue
        days = _SHORT_DAYS[a] if a == b else f"{_SHORT_DAYS[a]}-{_SHORT_DAYS[b]}"
        if spans == ((time(0, 0), _END_OF_DAY),):
            parts.append(f"{days} 24h")
            continue
        text = " & ".join(f"{_compact_time(s, twelve)}-{_compact_time(e, twelve)}" for s, e in spans)
        parts.append(f"{days} {text}")
    return ", ".join(parts) if parts else "closed"


# --------------------------------------------------------------------------------------
# the values of one text


@functools.lru_cache(maxsize=256)
def format_number(number: str, region: str = "US") -> str:
    """A number for people: national format at home (``(212) 555-0100``), international abroad."""
    import phonenumbers

    if not number:
        return ""
    try:
        parsed = phonenumbers.parse(number, region)
    except phonenumbers.NumberParseException:
        return number
    if not phonenumbers.is_possible_number(parsed):
        return number
    fmt = (
        phonenumbers.PhoneNumberFormat.NATIONAL
        if phonenumbers.region_code_for_number(parsed) == region.upper()
        else phonenumbers.PhoneNumberFormat.INTERNATIONAL
    )
    return phonenumbers.format_number(parsed, fmt)


def values(config: Config, line: LineConfig | None, *, caller_name: str, did: str, at: datetime,
           contact: Contact | None = None) -> dict[str, str]:
    """The placeholder values for a text to a caller of ``did`` that goes out at ``at``.

    A ``contact`` (the office's address book) names the caller as the office wrote it; without one
    the caller ID name is used when it looks like a person's (``person_name``). ``{first_name}``
    is the contact's first name, else the first word of that person's name."""
    b = config.business
    hours = effective_hours(config, line)
    name = contact.name if contact is not None else person_name(caller_name)
    first = contact.first_name if contact is not None else (name.split()[0] if name else "")
    return {
        "business": (line.name if line is not None and line.name else "") or b.name,
        "caller_name": name,
        "first_name": first,
        "booking_link": (line.booking_link if line is not None and line.booking_link else "") or b.booking_link,
        "hours": compact_hours(hours, b.default_region),
        "next_open": next_open_phrase(hours, at, b.tz, b.default_region),
        "contact": b.contact,
        "did": format_number(did or (line.did if line is not None else ""), b.default_region),
    }


def describe(text: str) -> sms.SmsInfo:
    """How ``text`` travels: encoding (``gsm7``/``ucs2``), units, segments, parts."""
    return sms.analyze(text)


# --------------------------------------------------------------------------------------
# check-config


SAMPLE_CALLER_NAME = "Maria Garcia"


@dataclass(frozen=True, slots=True)
class RenderedTemplate:
    """One configured template rendered with sample values, for ``check-config``."""

    key: str  # "messages.missed", "lines[0].after_hours", "followups[1].text"
    template: str
    text: str
    encoding: str  # "gsm7" | "ucs2"
    segments: int
    units: int
    warnings: tuple[str, ...] = ()
    text_unknown: str = ""  # the same template for a caller with no known name ("" when it names nobody)

    def to_json(self) -> dict[str, object]:
        return {
            "key": self.key,
            "template": self.template,
            "text": self.text,
            "text_unknown": self.text_unknown,
            "encoding": self.encoding,
            "segments": self.segments,
            "units": self.units,
            "warnings": list(self.warnings),
        }


def _fields_of(template: str) -> set[str]:
    try:
        return {f.split("|", 1)[0] for _, f, _, _ in string.Formatter().parse(template) if f}
    except ValueError:
        return set()


_NAME_FIELDS = frozenset({"caller_name", "first_name"})


def render_one(key: str, template: str, vals: dict[str, str]) -> RenderedTemplate:
    text = render(template, vals)
    unknown = render(template, {**vals, "caller_name": "", "first_name": ""}) if _fields_of(template) & _NAME_FIELDS else ""
    info = describe(text)
    warnings = []
    if info.segments > 1:
        warnings.append(
            f"{info.segments} segments ({'UCS-2' if info.encoding == 'ucs2' else 'GSM-7'}, "
            f"{info.units} {'code units' if info.encoding == 'ucs2' else 'septets'}): each costs one text"
        )
    if info.encoding == "ucs2":
        chars = " ".join(repr(c) for c in sms.non_gsm7_chars(text))
        warnings.append(f"UCS-2 because of {chars}: 70 characters per text instead of 160")
    for f in sorted(_fields_of(template) - _NAME_FIELDS):
        if not vals.get(f):
            warnings.append(f"{{{f}}} is empty here (set it in the config)")
    return RenderedTemplate(key, template, text, info.encoding, info.segments, info.units, tuple(warnings), unknown)


def render_all(config: Config, now: datetime) -> list[RenderedTemplate]:
    """Every configured template rendered with sample values at ``now``, with encoding and segments.

    ``messages.*`` use the business values; each ``[[lines]]`` entry shows its
    effective ``missed`` and ``after_hours`` (its own or the inherited ones)
    with the line's name, link, hours and number; follow-ups come last.
    ``{caller_name}`` gets a sample name (without one the text only gets shorter).
    """
    out: list[RenderedTemplate] = []
    default_did = config.lines[0].did if config.lines else ""

    def vals_for(line: LineConfig | None, did: str) -> dict[str, str]:
        return values(config, line, caller_name=SAMPLE_CALLER_NAME, did=did, at=now)

    base = vals_for(None, default_did)
    m = config.messages
    for k in ("missed", "after_hours", "opt_out", "opt_in", "help"):
        out.append(render_one(f"messages.{k}", getattr(m, k), base))
    if m.missed_known:
        out.append(render_one("messages.missed_known", m.missed_known, base))
    for i, line in enumerate(config.lines):
        lv = vals_for(line, line.did)
        for k in ("missed", "after_hours"):
            tpl = getattr(line, k) or getattr(m, k)
            r = render_one(f"lines[{i}].{k}", tpl, lv)
            out.append(r)
        if line.missed_known:
            out.append(render_one(f"lines[{i}].missed_known", line.missed_known, lv))
    for i, fu in enumerate(config.followups):
        out.append(render_one(f"followups[{i}].text", fu.text, base))
    return out
