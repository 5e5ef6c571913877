"""What staff do, in one place: the CLI (``textbackd reply``), staff answers by mail and the front
desk all act through these functions, so they cannot disagree.

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
from textbackd.core.model import MessageRow, MessageState, TextKind
from textbackd.core.numbers import mask
from textbackd.core.settings import Config
from textbackd.decide import templates
from textbackd.store import conversations as conv_q
from textbackd.store import outbox as outbox_q
from textbackd.store.db import Store

log = structlog.get_logger(__name__)

STAFF_TEXT_MAX_SEGMENTS = 4


def send_text(store: Store, config: Config, number: str, text: str, *, now: float, source: str) -> int:
    """Put a staff-written text for ``number`` in the outbox; its row id.

    Raises ``TextbackError`` (a clear one-line reason) for an empty or too long
    text, a number that cannot get texts, or a number that opted out.
    """
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
    mid = store.add_message(
        to=to, kind=TextKind.STAFF, state=MessageState.SCHEDULED, now=now, send_at=now, call_id=call_id, text=body,
        template=source, line_did=line_did or (call.did if call else ""),
        sender_pref=sender, segments=info.segments, encoding=info.encoding,
        expires_at=now + 6 * 3600, seq=seq,
    )
    if mid is None:  # only a race on seq can do this
        raise TextbackError("could not queue the text (another staff text was queued at the same moment); try again")
    log.info("staff_text_queued", message=mid, to=mask(to, config.logging.log_numbers), source=source)
    return mid


queue_staff_text = send_text

RESENDABLE = (MessageState.UNKNOWN, MessageState.FAILED)
RESEND_HOURS = 6  # a resent text not out within this long expires (as a staff text does)


def resend(store: Store, config: Config, message_id: int, *, now: float, source: str) -> MessageRow:
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
    if not outbox_q.mark_resend(store, m, now=now, source=source, expires_at=now + RESEND_HOURS * 3600):
        raise TextbackError(f"text {message_id} changed while it was being queued again; look at it and try again")
    log.warning("text_resend_queued", message=message_id, to=mask(m.to_number, config.logging.log_numbers),
                was=str(m.state), source=source)
    return store.message(message_id)
