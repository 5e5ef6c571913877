"""What staff do, in one place: the CLI (``textbackd reply``), staff answers by mail, the front desk
and the API all act through these functions, so they cannot disagree. Each action and its audit row
(who, what, when, about which number) commit in one transaction.

``actor`` names who acted: ``"web:<user>"``, ``"cli:<unix user>"``, ``"mail:<address>"``, ``"api:<token>"``.

``send_text`` (alias ``queue_staff_text``) is the one way a person's text becomes a
``kind = "staff"`` row in the outbox: a row before it is a send, with the same rules
everywhere (an opted-out number is refused with the reason, a text over
``STAFF_TEXT_MAX_SEGMENTS`` parts is refused, the line and sender follow the
conversation's last text).

``resend`` sends a text whose outcome is unknown (or that failed, maybe after some of its
parts went out) again, on purpose, recorded in that text's history (``textbackd resend``).
"""

from __future__ import annotations

import structlog

from textbackd.core import numbers
from textbackd.core.errors import StoreError, TextbackError
from textbackd.core.model import AuditAction, ConversationState, MessageRow, MessageState, TextKind
from textbackd.core.numbers import mask
from textbackd.core.settings import Config
from textbackd.core.timeutil import to_dt
from textbackd.decide import policy, templates
from textbackd.store import audit
from textbackd.store import conversations as conv_q
from textbackd.store import outbox as outbox_q
from textbackd.store.db import Store

log = structlog.get_logger(__name__)

STAFF_TEXT_MAX_SEGMENTS = 4


def send_text(store: Store, config: Config, number: str, text: str, *, now: float, source: str,
              actor: str = "", hold_until: float | None = None) -> int:
    """Put a staff-written text for ``number`` in the outbox; its row id.

    Raises ``TextbackError`` (a clear one-line reason) for an empty or too long
    text, a number that cannot get texts, or a number that opted out. The first
    staff member who sends in an unclaimed conversation also claims it.
    ``hold_until`` keeps it in the outbox until then (quiet hours: ``quiet_hours_end``).
    """
    actor = actor or source
    body = " ".join(text.split())
    if not body:
        raise TextbackError("the text is empty")
    ok, what = numbers.textable(number, config.business.default_region)
    if not ok:
        raise TextbackError(f"{number!r} cannot get texts ({what})")
    to = what
    if store.is_opted_out(to):
        raise TextbackError(f"{to} opted out (sent STOP); textbackd will not text it until it sends START")
    info = templates.describe(body)
    if info.segments > STAFF_TEXT_MAX_SEGMENTS:
        raise TextbackError(
            f"the text is {info.segments} SMS parts long; keep it to {STAFF_TEXT_MAX_SEGMENTS} ({len(body)} characters now)"
        )
    call = conv_q.last_missed_call(store, to)
    call_id = call.id if call else None
    seq = conv_q.next_staff_seq(store, call_id) if call_id is not None else 0
    line_did, sender = conv_q.last_route(store, to) or ("", "")
    send_at = max(now, hold_until) if hold_until is not None else now
    with store.tx():
        mid = store.add_message(
            to=to, kind=TextKind.STAFF, state=MessageState.SCHEDULED, now=now, send_at=send_at, call_id=call_id,
            text=body, template=source, line_did=line_did or (call.did if call else ""),
            sender_pref=sender, segments=info.segments, encoding=info.encoding,
            expires_at=send_at + 6 * 3600, seq=seq,
        )
        if mid is None:  # only a race on seq can do this
            raise TextbackError("could not queue the text (another staff text was queued at the same moment); try again")
        held = f", held for quiet hours until {_local(config, send_at)}" if send_at > now else ""
        audit.record(store, at=now, actor=actor, action=AuditAction.TEXT_SENT, number=to, message_id=mid,
                     detail=f"{info.segments} part(s), {info.encoding}{held}")
        if conv_q.state(store, to).claimed_by is None:
            conv_q.set_claim(store, to, actor, now)
    log.info("staff_text_queued", message=mid, to=mask(to, config.logging.log_numbers), source=source)
    return mid



def claim(store: Store, number: str, *, actor: str, now: float) -> ConversationState:
    """The conversation becomes ``actor``'s (taking it over from whoever had it)."""
    with store.tx():
        before = conv_q.state(store, number).claimed_by
        conv_q.set_claim(store, number, actor, now)
        audit.record(store, at=now, actor=actor, action=AuditAction.CLAIM, number=number,
                     detail=f"from {before}" if before and before != actor else "")
    return conv_q.state(store, number)


def release(store: Store, number: str, *, actor: str, now: float) -> ConversationState:
    """Nobody owns the conversation any more."""
    with store.tx():
        conv_q.set_claim(store, number, None, None)
        audit.record(store, at=now, actor=actor, action=AuditAction.CLAIM, number=number, detail="released")
    return conv_q.state(store, number)


def mark_handled(store: Store, number: str, *, actor: str, now: float) -> ConversationState:
    """Close the conversation; it reopens by itself on the next reply or missed call (``needs_person``)."""
    with store.tx():
        conv_q.set_handled(store, number, actor, now)
        audit.record(store, at=now, actor=actor, action=AuditAction.HANDLED, number=number)
    return conv_q.state(store, number)


def needs_person(store: Store, number: str) -> bool:
    """A reply or a missed call came after the conversation was last marked handled (or it never was)."""
    last = conv_q.last_activity(store, number)
    handled = conv_q.state(store, number).handled_at
    return last is not None and (handled is None or last > handled)


def block(store: Store, config: Config, number: str, *, actor: str, reason: str, now: float) -> int:
    """Opt the number out on staff's word (recorded with who and why) and cancel what was queued for it.

    Returns how many queued texts were cancelled. ``textbackd`` never texts it again until it sends START
    or staff unblock it.
    """
    to = numbers.normalize(number, config.business.default_region)
    if not reason.strip():
        raise TextbackError("say why the number is blocked (it is kept in the audit trail)")
    with store.tx():
        store.set_opt_out(to, True, now=now, source=f"staff:{actor}")
        n = 0
        for m in conv_q.pending(store, to, (TextKind.TEXTBACK, TextKind.FOLLOWUP, TextKind.STAFF)):
            n += store.transition(m.id, MessageState.CANCELLED, now=now, detail="blocked by staff",
                                  expect=MessageState.SCHEDULED)
        audit.record(store, at=now, actor=actor, action=AuditAction.BLOCK, number=to, detail=reason.strip()[:200])
    log.info("number_blocked", to=mask(to, config.logging.log_numbers), actor=actor, cancelled=n)
    return n


def unblock(store: Store, config: Config, number: str, *, actor: str, now: float) -> None:
    to = numbers.normalize(number, config.business.default_region)
    with store.tx():
        store.set_opt_out(to, False, now=now, source=f"staff:{actor}")
        audit.record(store, at=now, actor=actor, action=AuditAction.UNBLOCK, number=to)


# -- the front desk (issue 12) ------------------------------------------------------------


def quiet_hours_end(config: Config, now: float) -> float | None:
    """When the quiet hours holding ``now`` end, if a staff text now would land in them and the policy
    holds night-time texts (``quiet_hours = "defer"``); None when a text may go at once. The front desk
    asks the person which they want: hold it until then, or send it now."""
    if config.policy.quiet_hours != "defer":
        return None
    release = policy.quiet_release(to_dt(now), config)
    return release.timestamp() if release is not None else None


def _local(config: Config, ts: float) -> str:
    return templates.format_time(to_dt(ts).astimezone(config.business.tz).time(), config.business.default_region)


def record_export(store: Store, *, actor: str, what: str, now: float) -> None:
    """A download of figures or data (a CSV of the owner's figures...), in the audit trail."""
    audit.record(store, at=now, actor=actor, action=AuditAction.EXPORT, detail=what[:200])


queue_staff_text = send_text

RESENDABLE = (MessageState.UNKNOWN, MessageState.FAILED)
RESEND_HOURS = 6  # a resent text not out within this long expires (as a staff text does)


def resend(store: Store, config: Config, message_id: int, *, now: float, source: str,
           actor: str = "") -> MessageRow:
    """Send an ``unknown`` (or ``failed``) text again, on purpose: the caller may get a second copy.

    The text goes back to ``scheduled`` with a fresh start (attempts, expiry; a new concatenation
    reference for a long one; the earlier parts stay in its history as copy 1), recorded as a
    ``message_events`` row naming ``source``; the running daemon sends it within a few seconds.
    Raises ``TextbackError`` for a text that is not unknown or failed, has no text (a skip record),
    or goes to a number that opted out.
    """
    try:
        m = store.message(message_id)
    except StoreError:
        raise TextbackError(f"no text with id {message_id} (see `textbackd messages --state unknown`)") from None
    if m.state not in RESENDABLE:
        raise TextbackError(
            f"text {message_id} is {m.state}: only a text whose outcome is unknown, or that failed, is sent again")
    if not m.text:
        raise TextbackError(f"text {message_id} has no text to send ({m.kind}, {m.reason or 'no reason'})")
    if store.is_opted_out(m.to_number):
        raise TextbackError(f"{m.to_number} opted out (sent STOP); textbackd will not text it until it sends START")
    with store.tx():
        if not outbox_q.mark_resend(store, m, now=now, source=source, expires_at=now + RESEND_HOURS * 3600):
            raise TextbackError(f"text {message_id} changed while it was being queued again; look at it and try again")
        audit.record(store, at=now, actor=actor or source, action=AuditAction.RESEND, number=m.to_number,
                     message_id=message_id, detail=f"was {m.state}; may be a second copy")
    log.warning("text_resend_queued", message=message_id, to=mask(m.to_number, config.logging.log_numbers),
                was=str(m.state), source=source)
    return store.message(message_id)
