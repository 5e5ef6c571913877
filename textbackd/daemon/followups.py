"""Follow-up texts and escalation: when the next touch goes out, and what stops it.

The first half of this module is pure (no clock, no store, no I/O):

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

The second half, ``Followups``, reads those facts from the store, writes the
``kind = "followup"`` rows and cancels them the moment a reply, a call or an
opt-out arrives. The outbox's ``recheck`` is the safety net that looks again
just before each send.
"""

from __future__ import annotations

import re
import time as _time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta, timezone

import structlog

from textbackd.decide import policy
from textbackd.decide import templates
from textbackd.core.settings import Config, LineConfig, parse_duration
from textbackd.core.model import Call, Direction, MessageState, Outcome
from textbackd.core.numbers import mask, normalize
from textbackd.store.db import MessageRow, Store

log = structlog.get_logger(__name__)

MAX_TOUCHES = 3  # the text-back plus at most two follow-ups
FOLLOWUP = "followup"
TEXTBACK = "textback"
SENT_STATES = ("sent", "delivered")  # an "unknown" text-back may never have arrived: no follow-ups

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


@dataclass(frozen=True, slots=True)
class Facts:
    """What happened with a number after a missed call (None: never)."""

    opted_out: bool = False
    last_reply_at: datetime | None = None  # the number texted us (STOP excepted)
    last_call_from_at: datetime | None = None  # the number called in again (answered or not)
    last_office_contact_at: datetime | None = None  # the office called it and it answered
    last_staff_text_at: datetime | None = None  # staff texted it (reply command or mail)


def _aware(ts: datetime) -> datetime:
    return ts if ts.tzinfo is not None else ts.replace(tzinfo=timezone.utc)


def _business_day(d: date, line: LineConfig | None, config: Config) -> bool:
    hours = templates.effective_hours(config, line)
    if d in hours.holidays:
        return False
    if any(hours.days):
        return bool(hours.days[d.weekday()])
    return d.weekday() < 5


def next_touch(prev: datetime, after: str, line: LineConfig | None, config: Config) -> datetime:
    """When a follow-up with ``after`` goes out, the previous touch having gone at ``prev``."""
    prev = _aware(prev)
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
    prev = _aware(sent_at)
    for i, f in enumerate(config.followups[: MAX_TOUCHES - 1], start=1):
        prev = next_touch(prev, f.after, line, config)
        touches.append(Touch(seq=i, send_at=prev, template=f.text))
    return touches


def stop_reason(missed_call_ended: datetime, facts: Facts) -> str | None:
    """Why no further follow-up may go to this number, or None to go ahead."""
    ended = _aware(missed_call_ended)

    def after(ts: datetime | None) -> bool:
        return ts is not None and _aware(ts) > ended

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
    if _aware(now) < _aware(textback_sent_at) + timedelta(seconds=escalate_after_seconds):
        return False
    return stop_reason(missed_call_ended, facts) is None


# --------------------------------------------------------------------------------------
# the store side


def _dt(ts: float | None) -> datetime | None:
    return None if ts is None else datetime.fromtimestamp(ts, tz=timezone.utc)


def facts(store: Store, number: str, call_id: str | None) -> Facts:
    """The ``Facts`` for ``number``; the missed call ``call_id`` itself is not a call-back."""
    db = store.db
    reply = db.execute(
        "SELECT MAX(received_at) FROM incoming WHERE from_number=? AND keyword <> 'stop'", (number,)
    ).fetchone()[0]
    called = db.execute(
        "SELECT MAX(started) FROM calls WHERE direction='inbound' AND caller=? AND id<>?", (number, call_id or "")
    ).fetchone()[0]
    office = db.execute(
        """SELECT MAX(COALESCE(answered_at, ended)) FROM calls
           WHERE direction='outbound' AND outcome='answered' AND did=?""",
        (number,),
    ).fetchone()[0]
    staff = db.execute(
        "SELECT MAX(created) FROM messages WHERE to_number=? AND kind='staff' AND state NOT IN ('skipped','cancelled')",
        (number,),
    ).fetchone()[0]
    return Facts(
        opted_out=store.is_opted_out(number),
        last_reply_at=_dt(reply),
        last_call_from_at=_dt(called),
        last_office_contact_at=_dt(office),
        last_staff_text_at=_dt(staff),
    )


def missed_call_ended(store: Store, call_id: str | None, fallback: float) -> float:
    if call_id:
        row = store.get_call(call_id)
        if row is not None:
            return float(row["ended"])
    return fallback


class Followups:
    """Schedules follow-ups after a text-back is sent and cancels them when the conversation moves on."""

    def __init__(self, store: Store, config: Config, *, clock: Callable[[], float] = _time.time,
                 wake_outbox: Callable[[], None] = lambda: None) -> None:
        self.store = store
        self.config = config
        self.clock = clock
        self.wake_outbox = wake_outbox

    @property
    def enabled(self) -> bool:
        return bool(self.config.followups)

    def schedule(self, textback_id: int) -> list[int]:
        """Write the follow-up rows for a sent text-back (idempotent: one row per call and seq)."""
        if not self.enabled:
            return []
        m = self.store.message(textback_id)
        if m.kind != TEXTBACK or str(m.state) not in SENT_STATES or m.call_id is None:
            return []
        now = self.clock()
        ended = missed_call_ended(self.store, m.call_id, m.created)
        if stop_reason(_dt(ended), facts(self.store, m.to_number, m.call_id)) is not None:
            return []
        call = self.store.get_call(m.call_id)
        line = policy.line_for(self.config, m.line_did) if m.line_did else None
        sent_at = m.sent_at or m.updated
        ids = []
        for touch in plan(_dt(sent_at), line, self.config):
            vals = templates.values(self.config, line, caller_name=call["caller_name"] if call else "",
                                    did=m.line_did, at=touch.send_at)
            text = templates.render(touch.template, vals)
            info = templates.describe(text)
            mid = self.store.add_message(
                to=m.to_number, kind=FOLLOWUP, state=MessageState.SCHEDULED, now=now,
                send_at=touch.send_at.timestamp(), call_id=m.call_id, text=text, template=f"followup{touch.seq}",
                line_did=m.line_did, sender_pref=m.sender_pref or m.sender, segments=info.segments,
                encoding=info.encoding,
                expires_at=touch.send_at.timestamp() + self.config.policy.max_age_minutes * 60, seq=touch.seq,
            )
            if mid is not None:
                ids.append(mid)
        if ids:
            log.info("followups_scheduled", message=textback_id, count=len(ids),
                     to=mask(m.to_number, self.config.logging.log_numbers))
        return ids

    def sweep(self, *, within: float = 2 * 86400) -> int:
        """Schedule follow-ups for text-backs sent recently that have none (after a crash between
        the send and the scheduling). Returns how many rows were written."""
        if not self.enabled:
            return 0
        since = self.clock() - within
        rows = self.store.db.execute(
            f"""SELECT m.id FROM messages m WHERE m.kind='textback' AND m.state IN ({','.join('?' * len(SENT_STATES))})
                AND m.sent_at >= ? AND m.call_id IS NOT NULL
                AND NOT EXISTS (SELECT 1 FROM messages f WHERE f.call_id=m.call_id AND f.kind='followup')""",
            (*SENT_STATES, since),
        ).fetchall()
        return sum(len(self.schedule(r["id"])) for r in rows)

    def cancel(self, number: str, reason: str) -> int:
        """Cancel every scheduled follow-up to ``number`` at once."""
        now = self.clock()
        n = 0
        for m in self.store.messages(number=number, states=("scheduled",), limit=100):
            if m.kind == FOLLOWUP and self.store.transition(
                m.id, MessageState.CANCELLED, now=now, detail=reason, expect=MessageState.SCHEDULED
            ):
                n += 1
        if n:
            log.info("followups_cancelled", to=mask(number, self.config.logging.log_numbers), reason=reason, count=n)
        return n

    # -- hooks the daemon calls ---------------------------------------------------------

    def on_text_state(self, m: MessageRow, state: MessageState) -> None:
        if state is MessageState.SENT and m.kind == TEXTBACK:
            self.schedule(m.id)
        elif state is MessageState.SENT and m.kind == "staff":
            self.cancel(m.to_number, "staff_took_over")

    def on_reply(self, from_number: str, kw: str) -> None:
        number = normalize(from_number, self.config.business.default_region)
        self.cancel(number, "opted_out" if kw == "stop" else "replied")

    def on_call(self, call: Call) -> None:
        region = self.config.business.default_region
        if call.direction is Direction.INBOUND:
            self.cancel(normalize(call.caller, region), "called_back")
        elif call.direction is Direction.OUTBOUND and call.outcome is Outcome.ANSWERED:
            self.cancel(normalize(call.did, region), "answered_callback")

    def recheck(self, m: MessageRow, now: float) -> str | None:
        """The last look before a follow-up goes out; None for other kinds (the pipeline decides those)."""
        if m.kind != FOLLOWUP:
            return None
        ended = missed_call_ended(self.store, m.call_id, m.created)
        return stop_reason(_dt(ended), facts(self.store, m.to_number, m.call_id))


def chain_recheck(*checks: Callable[[MessageRow, float], str | None]) -> Callable[[MessageRow, float], str | None]:
    """One outbox ``recheck`` from several: the first reason wins."""

    def run(m: MessageRow, now: float) -> str | None:
        for check in checks:
            reason = check(m, now)
            if reason:
                return reason
        return None

    return run


__all__ = [
    "MAX_TOUCHES", "STOP_REASONS", "Facts", "Followups", "Touch", "chain_recheck", "escalation_due", "facts",
    "next_touch", "plan", "stop_reason",
]
