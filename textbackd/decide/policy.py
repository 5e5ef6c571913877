"""Who gets a text back, what it says and when it goes out: pure functions.

``decide(call, history, config, now)`` turns one finished call into a
``TextDecision`` (the rendered text and its send time) or a ``SkipDecision``
with a stable machine-readable reason. ``recheck(pending, history, config,
now)`` runs just before the outbox sends a scheduled text and says whether it
must be cancelled. Neither reads a clock, the store or the network: the store
fills a ``History`` for the caller's number and the caller passes ``now``.

The checks run in this order; the first that fails names the skip:

1. ``not_inbound`` (internal, outbound), ``answered``, ``line_disabled`` (a
   ``[[lines]]`` entry with ``enabled = false``), ``outcome_disabled`` (the
   outcome is not in ``policy.outcomes``), ``voicemail_left`` (a message was
   left and ``text_when_voicemail_left = false``), ``min_ring`` (rang less than
   ``min_ring_seconds``; for IVR and queue abandons the whole call counts),
   ``too_old`` (the call ended more than ``max_age_minutes`` before ``now``).
2. The number: ``withheld_number``, ``invalid_number`` (extensions, short codes,
   garbage), ``number_type_<kind>`` (``premium_rate``, ``shared_cost``,
   ``toll_free``, ``pager``, ``uan``, ``voicemail``), ``automated_sender`` (one of
   our own lines or sender numbers, or flagged by the store),
   ``country_not_allowed`` (the number's real region, so +1 876 is JM, not US),
   ``blocked``, ``contact_tag_<tag>`` (the caller is in the contacts with one of
   ``policy.never_text_tags``: a vendor, staff, family), ``not_allowed`` (an allow list is set
   and the number is not on it), ``opted_out``.
3. The history: ``answered_callback`` (an answered call with the number after
   this one ended, or one up right now), ``duplicate`` (a text-back is already scheduled or in
   flight, or one was sent within ``dedupe_hours``), ``conversation_open`` (the
   number texted us within ``CONVERSATION_HOURS``), ``cap_number``,
   ``cap_prefix``, ``cap_global``.

A text goes out at ``call.ended + grace_seconds``. When the office is closed
at the time of the call (weekday hours in ``business.timezone``, holidays,
per-line hours) the ``after_hours`` template is used, and if the send time
falls in quiet hours and ``quiet_hours = "defer"`` the text waits until
``quiet_end``. Quiet hours only hold back after-hours texts: while the office
is open a caller who just called gets the text at once. Without any opening
hours configured every text uses the ``missed`` template and quiet hours hold
all of them.

A caller found in the office's contacts comes in as ``contact`` (data, like the history): its
tags decide ``contact_tag_<tag>``, a missed call uses ``missed_known`` (the line's, else
``messages.missed_known``) when one is set, and ``{caller_name}``/``{first_name}`` are the
contact's.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from datetime import datetime, time, timedelta
from typing import Any

from textbackd.core import numbers
from textbackd.core.model import Call, Contact, Direction, History, Outcome, iso
from textbackd.core.settings import Config, LineConfig
from textbackd.core.timeutil import aware
from textbackd.decide import templates

# How long after the caller's last text to us a conversation counts as open.
# (``policy.conversation_hours`` wins when the config has it.)
CONVERSATION_HOURS = 24.0

# Every reason decide() or recheck() can give, for docs, metrics and tests.
# number_type_* reasons come from numbers.textable (one per kind in numbers.NOT_TEXTABLE_KINDS).
REASONS = (
    "not_inbound",
    "answered",
    "line_disabled",
    "outcome_disabled",
    "voicemail_left",
    "min_ring",
    "too_old",
    "withheld_number",
    "invalid_number",
    *sorted(f"number_type_{k}" for k in numbers.NOT_TEXTABLE_KINDS),
    "automated_sender",
    "country_not_allowed",
    "blocked",
    # "contact_tag_<tag>" for each tag of policy.never_text_tags (issue 14)
    "not_allowed",
    "opted_out",
    "answered_callback",
    "duplicate",
    "conversation_open",
    "cap_number",
    "cap_prefix",
    "cap_global",
)


@dataclass(frozen=True, slots=True)
class TextDecision:
    """Send ``text`` to ``to`` at ``send_at`` (or as soon after as a sender is free)."""

    to: str  # E.164
    text: str
    send_at: datetime
    template: str  # "missed" | "after_hours"
    line_did: str  # the business number that was called (the [[lines]] did when one matched)
    sender: str  # preferred sender name, "" = the senders in configured order
    encoding: str  # "gsm7" | "ucs2"
    segments: int
    after_hours: bool
    deferred: bool = False  # held back by quiet hours

    action = "text"

    def to_json(self) -> dict[str, Any]:
        return {
            "action": "text",
            "to": self.to,
            "text": self.text,
            "send_at": iso(self.send_at),
            "template": self.template,
            "line_did": self.line_did,
            "sender": self.sender,
            "encoding": self.encoding,
            "segments": self.segments,
            "after_hours": self.after_hours,
            "deferred": self.deferred,
        }


@dataclass(frozen=True, slots=True)
class SkipDecision:
    """No text, for ``reason`` (one of ``REASONS``); ``detail`` is for people (e.g. the region)."""

    reason: str
    detail: str = ""

    action = "skip"

    def to_json(self) -> dict[str, Any]:
        return {"action": "skip", "reason": self.reason, "detail": self.detail}


Decision = TextDecision | SkipDecision


@dataclass(frozen=True, slots=True)
class Pending:
    """A scheduled text-back about to be sent, as the outbox knows it."""

    to: str  # E.164
    call_ended: datetime  # when the missed call ended
    send_at: datetime  # when it was due (after grace or quiet-hours deferral)
    created: datetime  # when the decision was made


# --------------------------------------------------------------------------------------
# helpers


def number_prefix(e164: str) -> str:
    """All but the last 4 digits: the unit of the per-prefix cap."""
    return e164[:-4] if len(e164) > 4 else e164


@dataclass(frozen=True, slots=True)
class _Prepared:
    """What decide() derives from a config once: numbers normalised, lists split."""

    lines: dict[str, LineConfig]  # normalised did → line
    own: frozenset[str]  # our lines and sender numbers, E.164
    block: tuple[frozenset[str], tuple[str, ...]]  # (numbers, prefixes)
    allow: tuple[frozenset[str], tuple[str, ...]]


_PREPARED: dict[int, tuple[Config, _Prepared]] = {}


def _prepare(config: Config) -> _Prepared:
    hit = _PREPARED.get(id(config))
    if hit is not None and hit[0] is config:
        return hit[1]
    region = config.business.default_region
    lines = {}
    for line in config.lines:
        lines.setdefault(numbers.normalize(line.did, region), line)
    own = {numbers.normalize(raw, region) for raw in [*(ln.did for ln in config.lines), *(s.own_number for s in config.senders)]}
    prepared = _Prepared(
        lines=lines,
        own=frozenset(n for n in own if n.startswith("+")),
        block=_split_list(config.policy.block, region),
        allow=_split_list(config.policy.allow, region),
    )
    if len(_PREPARED) >= 8:
        _PREPARED.clear()
    _PREPARED[id(config)] = (config, prepared)
    return prepared


def _split_list(entries: tuple[str, ...], region: str) -> tuple[frozenset[str], tuple[str, ...]]:
    """Block/allow entries: numbers in any format, or prefixes ending in ``*`` (``+1876*``)."""
    exact, prefixes = set(), []
    for entry in entries:
        e = entry.strip()
        if e.endswith("*"):
            head = "".join(ch for ch in e[:-1] if ch.isdigit())
            if head:
                prefixes.append("+" + (head[2:] if e.startswith("00") else head))
        elif e:
            exact.add(numbers.normalize(e, region))
    return frozenset(exact), tuple(prefixes)


def _matches(e164: str, lists: tuple[frozenset[str], tuple[str, ...]]) -> bool:
    return e164 in lists[0] or e164.startswith(lists[1])


def line_for(config: Config, did: str) -> LineConfig | None:
    """The ``[[lines]]`` entry for the dialled number, matched exactly or as the same E.164 number."""
    exact = config.line_for(did)
    if exact is not None or not did or not config.lines:
        return exact
    return _prepare(config).lines.get(numbers.normalize(did, config.business.default_region))


def own_numbers(config: Config) -> frozenset[str]:
    """Our lines and sender numbers in E.164: never text these (loop prevention)."""
    return _prepare(config).own


@functools.lru_cache(maxsize=4096)
def _lookup(raw: str, region: str) -> tuple[str | None, str, str | None]:
    """(skip reason or None, e164, the number's own region) for a caller ID."""
    ok, what = numbers.textable(raw, region)
    if not ok:
        return what, "", None
    info = numbers.info(what, region)
    return None, what, info.region if info is not None else None


def _in_quiet(local: time, start: time, end: time) -> bool:
    if start == end:
        return False
    if start < end:
        return start <= local < end
    return local >= start or local < end


def _quiet_release(ts: datetime, config: Config) -> datetime | None:
    """When quiet hours that hold ``ts`` end (the next ``quiet_end`` local time), or None if not quiet."""
    p = config.policy
    tz = config.business.tz
    local = ts.astimezone(tz)
    if not _in_quiet(local.time().replace(tzinfo=None), p.quiet_start, p.quiet_end):
        return None
    day = local.date()
    release = templates._local_instant(day, p.quiet_end, tz)
    if release <= local:
        release = templates._local_instant(day + timedelta(days=1), p.quiet_end, tz)
    return release


def _dedupe_hit(last: datetime | None, now: datetime, dedupe_hours: float) -> bool:
    return last is not None and dedupe_hours > 0 and now - aware(last) < timedelta(hours=dedupe_hours)


def _conversation_hours(config: Config) -> float:
    return float(getattr(config.policy, "conversation_hours", CONVERSATION_HOURS))


# --------------------------------------------------------------------------------------
# decide


def _call_checks(call: Call, line: LineConfig | None, config: Config, now: datetime, ended: datetime) -> str | None:
    p = config.policy
    if call.direction is not Direction.INBOUND:
        return "not_inbound"
    if call.outcome is Outcome.ANSWERED:
        return "answered"
    if line is not None and not line.enabled:
        return "line_disabled"
    if str(call.outcome) not in p.outcomes:
        return "outcome_disabled"
    if call.voicemail_left and not p.text_when_voicemail_left:
        return "voicemail_left"
    rang = call.ring_seconds
    if call.outcome in (Outcome.IVR_ABANDON, Outcome.QUEUE_ABANDON):
        rang = max(rang, call.duration_seconds)
    if p.min_ring_seconds > 0 and not rang >= p.min_ring_seconds:
        return "min_ring"
    if now - ended > timedelta(minutes=p.max_age_minutes):
        return "too_old"
    return None


def _caller_id(call: Call) -> str:
    """``call.caller``, or ``caller_raw`` when the tracker left the caller empty or withheld but the raw ID is not."""
    raw = call.caller if call.caller.strip() else call.caller_raw
    if numbers.is_withheld(raw) and not numbers.is_withheld(call.caller_raw):
        raw = call.caller_raw
    return raw


def destination(call: Call, config: Config) -> str:
    """The E.164 number a text-back for ``call`` would go to, or ``""``: the number to read ``History`` for."""
    reason, e164, _ = _lookup(_caller_id(call), config.business.default_region)
    return "" if reason else e164


def contact_tag(contact: Contact | None, config: Config) -> str | None:
    """``contact_tag_<tag>`` when the contact has a tag the policy never texts, else None."""
    if contact is None or not config.policy.never_text_tags:
        return None
    hit = next((t for t in contact.tags if t in config.policy.never_text_tags), None)
    return f"contact_tag_{hit}" if hit else None


def _number_checks(call: Call, config: Config, history: History,
                   contact: Contact | None = None) -> tuple[str | None, str, str]:
    """(reason or None, detail, e164)."""
    reason, e164, number_region = _lookup(_caller_id(call), config.business.default_region)
    if reason:
        return reason, "", ""
    prepared = _prepare(config)
    if e164 in prepared.own or history.automated_sender:
        return "automated_sender", "", e164
    if number_region not in config.allowed_countries:
        return "country_not_allowed", number_region or "?", e164
    if _matches(e164, prepared.block):
        return "blocked", "", e164
    tag = contact_tag(contact, config)
    if tag:
        return tag, contact.source if contact else "", e164
    if config.policy.allow and not _matches(e164, prepared.allow):
        return "not_allowed", "", e164
    if history.opted_out:
        return "opted_out", "", e164
    return None, "", e164


def _answered_since(history: History, ended: datetime) -> bool:
    last = history.last_answered_contact_at
    return history.answered_call_active or (last is not None and aware(last) > ended)


def _history_checks(ended: datetime, history: History, config: Config, now: datetime) -> str | None:
    p = config.policy
    if _answered_since(history, ended):
        return "answered_callback"
    if history.pending_textback or _dedupe_hit(history.last_textback_at, now, p.dedupe_hours):
        return "duplicate"
    if history.last_inbound_text_at is not None and now - aware(history.last_inbound_text_at) < timedelta(
        hours=_conversation_hours(config)
    ):
        return "conversation_open"
    if history.texts_to_number_24h >= p.max_per_number_per_day:
        return "cap_number"
    if history.texts_to_prefix_1h >= p.max_per_prefix_per_hour:
        return "cap_prefix"
    if history.texts_global_1h >= p.max_per_hour:
        return "cap_global"
    return None


def decide(call: Call, history: History, config: Config, now: datetime, contact: Contact | None = None) -> Decision:
    """The decision for one finished call: a text (rendered, timed) or a skip with its reason.

    ``contact`` is the caller as the office's address book knows them (None: not in it)."""
    now = aware(now)
    ended = aware(call.ended)
    line = line_for(config, call.did)
    reason = _call_checks(call, line, config, now, ended)
    if reason:
        return SkipDecision(reason)
    reason, detail, e164 = _number_checks(call, config, history, contact)
    if reason:
        return SkipDecision(reason, detail)
    reason = _history_checks(ended, history, config, now)
    if reason:
        return SkipDecision(reason)

    tz = config.business.tz
    hours = templates.effective_hours(config, line)
    has_hours = any(hours.days)  # no opening hours configured: never "after hours", quiet hours still hold
    after_hours = has_hours and not templates.is_open(hours, ended, tz)
    send_at = ended + timedelta(seconds=config.policy.grace_seconds)
    deferred = False
    if (after_hours or not has_hours) and config.policy.quiet_hours == "defer":
        release = _quiet_release(max(send_at, now), config)
        if release is not None:
            send_at, deferred = release, True
    key = "after_hours" if after_hours else "missed"
    template = (getattr(line, key) if line is not None else "") or getattr(config.messages, key)
    if contact is not None and key == "missed":
        known = (line.missed_known if line is not None else "") or config.messages.missed_known
        if known:
            key, template = "missed_known", known
    vals = templates.values(config, line, caller_name=call.caller_name, did=call.did, at=max(send_at, now),
                            contact=contact)
    text = templates.render(template, vals)
    info = templates.describe(text)
    return TextDecision(
        to=e164,
        text=text,
        send_at=send_at,
        template=key,
        line_did=line.did if line is not None else call.did,
        sender=line.sender if line is not None else "",
        encoding=info.encoding,
        segments=info.segments,
        after_hours=after_hours,
        deferred=deferred,
    )


# --------------------------------------------------------------------------------------
# recheck


def recheck(pending: Pending, history: History, config: Config, now: datetime) -> str | None:
    """A reason to cancel a scheduled text-back just before it is sent, or None to send it.

    ``history`` is the store's view of ``pending.to`` without the pending row itself.
    """
    now = aware(now)
    ended = aware(pending.call_ended)
    if history.opted_out:
        return "opted_out"
    if _matches(pending.to, _prepare(config).block):
        return "blocked"
    if _answered_since(history, ended):
        return "answered_callback"
    if history.last_inbound_text_at is not None and aware(history.last_inbound_text_at) > ended:
        return "conversation_open"
    last = history.last_textback_at
    if last is not None and (
        aware(last) >= aware(pending.created) or _dedupe_hit(last, now, config.policy.dedupe_hours)
    ):
        return "duplicate"
    if now - aware(pending.send_at) > timedelta(minutes=config.policy.max_age_minutes):
        return "too_old"
    return None


def quiet_release(ts: datetime, config: Config) -> datetime | None:
    """When the quiet hours holding ``ts`` end, or None when ``ts`` is not in them (a staff text asks this)."""
    return _quiet_release(ts, config)
