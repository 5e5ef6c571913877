"""Follow-up texts and escalation, the pure rules: when the next touch goes out, and what stops it.

No clock, no store, no I/O:

* ``plan(sent_at, line, config)`` — the follow-ups ``[[followups]]`` asks for after
  a text-back went out at ``sent_at``. Each ``after`` counts from the previous
  touch (the text-back for the first follow-up). ``"2h"``/``"30m"``/``"1d"`` are
  plain delays; ``"next_business_day 09:00"`` is that wall time (business time
  zone) on the next day after the previous touch that has opening hours and is
  not a holiday (Mon-Fri when no hours are configured; without a time, the
  day's first opening). A plain delay that lands in quiet hours waits for
  ``quiet_end``. At most ``MAX_TOUCHES`` texts in all: the text-back and two
  follow-ups.
* ``stop_reason(missed_call_ended, facts)`` — why a follow-up must not go:
  ``opted_out``, ``replied`` (the number texted us after the missed call),
  ``called_back`` (the number called again), ``answered_callback`` (the
  office called it and it picked up), ``staff_took_over`` (staff texted it).
* ``escalation_due(...)`` — no reply and no call-back ``escalate_after`` after the
  text-back: staff get an e-mail with the whole context.

``daemon/followups.py`` reads the facts from the store and writes the rows.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta

from textbackd.core.model import Facts, MessageState, TextKind
from textbackd.core.settings import Config, LineConfig, parse_duration
from textbackd.core.timeutil import aware
from textbackd.decide import policy, templates

MAX_TOUCHES = 3  # the text-back plus at most two follow-ups
FOLLOWUP = TextKind.FOLLOWUP
TEXTBACK = TextKind.TEXTBACK
SENT_STATES = (MessageState.SENT, MessageState.DELIVERED)  # an "unknown" text-back may never have arrived

STOP_REASONS = ("opted_out", "replied", "called_back", "answered_callback", "staff_took_over")

_NEXT_DAY = re.compile(r"^next_business_day(?:\s+(\d\d):(\d\d))?$")


# --------------------------------------------------------------------------------------
# pure rules


@dataclass(frozen=True, slots=True)
class Touch:
    """One planned follow-up: its number in the sequence (1, 2), send time and template."""

    seq: int
    send_at: datetime
    template: str


def _business_day(d: date, line: LineConfig | None, config: Config) -> bool:
    hours = templates.effective_hours(config, line)
    if d in hours.holidays:
        return False
    if any(hours.days):
        return bool(hours.days[d.weekday()])
    return d.weekday() < 5


def next_touch(prev: datetime, after: str, line: LineConfig | None, config: Config) -> datetime:
    """When a follow-up with ``after`` goes out, the previous touch having gone at ``prev``."""
    prev = aware(prev)
    delay = parse_duration(after)
    if delay is not None:
        at = prev + timedelta(seconds=delay)
        release = policy._quiet_release(at, config)
        return release if release is not None and config.policy.quiet_hours == "defer" else at
    m = _NEXT_DAY.match(after.strip())
    if m is None:
        raise ValueError(f"not a follow-up delay: {after!r}")
    tz = config.business.tz
    day = prev.astimezone(tz).date() + timedelta(days=1)
    for _ in range(366):
        if _business_day(day, line, config):
            break
        day += timedelta(days=1)
    if m.group(1):
        wall = time(int(m.group(1)), int(m.group(2)))
    else:
        spans = templates.effective_hours(config, line).days[day.weekday()]
        wall = spans[0][0] if spans else time(9, 0)
    return templates._local_instant(day, wall, tz)


def plan(sent_at: datetime, line: LineConfig | None, config: Config) -> list[Touch]:
    """The follow-ups to schedule after a text-back sent at ``sent_at`` (at most two)."""
    touches: list[Touch] = []
    prev = aware(sent_at)
    for i, f in enumerate(config.followups[: MAX_TOUCHES - 1], start=1):
        prev = next_touch(prev, f.after, line, config)
        touches.append(Touch(seq=i, send_at=prev, template=f.text))
    return touches


def stop_reason(missed_call_ended: datetime, facts: Facts) -> str | None:
    """Why no further follow-up may go to this number, or None to go ahead."""
    ended = aware(missed_call_ended)

    def after(ts: datetime | None) -> bool:
        return ts is not None and aware(ts) > ended

    if facts.opted_out:
        return "opted_out"
    if after(facts.last_reply_at):
        return "replied"
    if after(facts.last_call_from_at):
        return "called_back"
    if after(facts.last_office_contact_at):
        return "answered_callback"
    if after(facts.last_staff_text_at):
        return "staff_took_over"
    return None


def escalation_due(textback_sent_at: datetime, missed_call_ended: datetime, facts: Facts,
                   escalate_after_seconds: float, now: datetime) -> bool:
    """True when staff must hear about this caller: the text-back got no reply and no call-back in time."""
    if escalate_after_seconds <= 0:
        return False
    if aware(now) < aware(textback_sent_at) + timedelta(seconds=escalate_after_seconds):
        return False
    return stop_reason(missed_call_ended, facts) is None
