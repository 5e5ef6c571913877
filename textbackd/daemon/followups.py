"""Follow-up texts and escalation in the running daemon.

The rules are pure and live in ``decide/followups.py`` (re-exported here):

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

``Followups`` reads those facts from the store, writes the
``kind = "followup"`` rows and cancels them the moment a reply, a call or an
opt-out arrives. The outbox's ``recheck`` is the safety net that looks again
just before each send.
"""

from __future__ import annotations

import time as _time
from collections.abc import Callable

import structlog

from textbackd.core.model import Call, Direction, Facts, MessageState, Outcome
from textbackd.core.numbers import mask, normalize
from textbackd.core.settings import Config
from textbackd.core.timeutil import to_dt
from textbackd.decide import policy, templates
from textbackd.decide.followups import (  # noqa: F401 - the rules are part of this module's API
    FOLLOWUP,
    MAX_TOUCHES,
    SENT_STATES,
    STOP_REASONS,
    TEXTBACK,
    Touch,
    escalation_due,
    next_touch,
    plan,
    stop_reason,
)
from textbackd.store import followups as followups_q
from textbackd.store.db import MessageRow, Store
from textbackd.store.followups import facts

log = structlog.get_logger(__name__)

# --------------------------------------------------------------------------------------
# the store side


def missed_call_ended(store: Store, call_id: str | None, fallback: float) -> float:
    if call_id:
        row = store.get_call(call_id)
        if row is not None:
            return float(row.ended)
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
        if stop_reason(to_dt(ended), facts(self.store, m.to_number, m.call_id)) is not None:
            return []
        call = self.store.get_call(m.call_id)
        line = policy.line_for(self.config, m.line_did) if m.line_did else None
        sent_at = m.sent_at or m.updated
        ids = []
        for touch in plan(to_dt(sent_at), line, self.config):
            vals = templates.values(self.config, line, caller_name=call.caller_name if call else "",
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
        ids = followups_q.textbacks_without_followups(self.store, SENT_STATES, since)
        return sum(len(self.schedule(mid)) for mid in ids)

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
        return stop_reason(to_dt(ended), facts(self.store, m.to_number, m.call_id))


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
