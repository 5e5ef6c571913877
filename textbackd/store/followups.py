"""What the follow-up rules and the escalation check ask of the store."""

from __future__ import annotations

from textbackd.core.model import NOT_COUNTED_STATES, Facts, Outcome, TextKind
from textbackd.core.timeutil import to_dt
from textbackd.store.db import Store, marks


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
           WHERE direction='outbound' AND outcome=? AND did=?""",
        (Outcome.ANSWERED, number),
    ).fetchone()[0]
    staff = db.execute(
        f"SELECT MAX(created) FROM messages WHERE to_number=? AND kind=? AND state NOT IN ({marks(NOT_COUNTED_STATES)})",
        (number, TextKind.STAFF, *NOT_COUNTED_STATES),
    ).fetchone()[0]
    return Facts(
        opted_out=store.is_opted_out(number),
        last_reply_at=to_dt(reply),
        last_call_from_at=to_dt(called),
        last_office_contact_at=to_dt(office),
        last_staff_text_at=to_dt(staff),
    )


def textbacks_without_followups(store: Store, states: tuple[str, ...], since: float) -> list[int]:
    """Text-backs in ``states`` sent since ``since`` that have no follow-up row (a crash came between)."""
    rows = store.db.execute(
        f"""SELECT m.id FROM messages m WHERE m.kind=? AND m.state IN ({marks(states)})
            AND m.sent_at >= ? AND m.call_id IS NOT NULL
            AND NOT EXISTS (SELECT 1 FROM messages f WHERE f.call_id=m.call_id AND f.kind=?)""",
        (TextKind.TEXTBACK, *states, since, TextKind.FOLLOWUP),
    )
    return [r["id"] for r in rows]
