"""What replies, staff texts and the conversation threads ask of the store."""

from __future__ import annotations

from textbackd.core.model import (
    CallRecord,
    ConversationState,
    EventType,
    IncomingRecord,
    MessageRow,
    MessageState,
    TextKind,
)
from textbackd.store import events
from textbackd.store.db import Store, call_of, incoming_of, message_of


def last_missed_call(store: Store, number: str) -> CallRecord | None:
    """The number's latest missed call (what a reply answers)."""
    r = store.db.execute(
        "SELECT * FROM calls WHERE caller=? AND missed=1 ORDER BY ended DESC LIMIT 1", (number,)
    ).fetchone()
    return call_of(r) if r else None


def next_staff_seq(store: Store, call_id: str) -> int:
    """The ``seq`` of the next staff text about a call (one row per call, kind and seq)."""
    return store.db.execute(
        "SELECT COALESCE(MAX(seq), 0) + 1 FROM messages WHERE call_id=? AND kind=?", (call_id, TextKind.STAFF)
    ).fetchone()[0]


def last_route(store: Store, number: str) -> tuple[str, str] | None:
    """(line DID, sender) of the latest text a sender took for ``number``: a staff text follows it."""
    r = store.db.execute(
        "SELECT line_did, sender FROM messages WHERE to_number=? AND sender<>'' ORDER BY created DESC LIMIT 1",
        (number,),
    ).fetchone()
    return (r["line_did"], r["sender"]) if r else None


def thread(store: Store, number: str, since: float = 0.0) -> tuple[list[MessageRow], list[IncomingRecord]]:
    """Every text to ``number`` (decisions that were never texts left out) and from it, since ``since``."""
    out = [message_of(r) for r in store.db.execute(
        "SELECT * FROM messages WHERE to_number=? AND created>=? AND state<>? ORDER BY created",
        (number, since, MessageState.SKIPPED))]
    inc = [incoming_of(r) for r in store.db.execute(
        "SELECT * FROM incoming WHERE from_number=? AND received_at>=? ORDER BY received_at", (number, since))]
    return out, inc


def state(store: Store, number: str) -> ConversationState:
    r = store.db.execute("SELECT * FROM conversations WHERE number=?", (number,)).fetchone()
    return ConversationState(**dict(r)) if r else ConversationState(number=number)


def set_claim(store: Store, number: str, who: str | None, at: float | None) -> None:
    store.write(
        """INSERT INTO conversations (number, claimed_by, claimed_at) VALUES (?,?,?)
           ON CONFLICT(number) DO UPDATE SET claimed_by=excluded.claimed_by, claimed_at=excluded.claimed_at""",
        (number, who, at),
    )


def set_handled(store: Store, number: str, who: str | None, at: float | None) -> None:
    """Mark (or, with ``at=None``, unmark) the conversation handled; a mark is a ``conversation.handled`` event."""
    with store.tx():
        store.write(
            """INSERT INTO conversations (number, handled_by, handled_at) VALUES (?,?,?)
               ON CONFLICT(number) DO UPDATE SET handled_by=excluded.handled_by, handled_at=excluded.handled_at""",
            (number, who, at),
        )
        if at is not None:
            events.record(store.db, EventType.CONVERSATION_HANDLED, state(store, number).to_public(), at=at)


def last_activity(store: Store, number: str) -> float | None:
    """When the customer last did something that needs a person: a reply (not STOP) or a missed call."""
    r = store.db.execute(
        """SELECT MAX(t) FROM (
             SELECT MAX(received_at) AS t FROM incoming WHERE from_number=? AND keyword<>'stop'
             UNION ALL SELECT MAX(ended) FROM calls WHERE caller=? AND missed=1)""",
        (number, number),
    ).fetchone()
    return r[0]


def pending(store: Store, number: str, kinds: tuple[str, ...]) -> list[MessageRow]:
    """Texts of ``kinds`` still scheduled for ``number``."""
    return [message_of(r) for r in store.db.execute(
        f"SELECT * FROM messages WHERE to_number=? AND state=? AND kind IN ({','.join('?' * len(kinds))})",
        (number, MessageState.SCHEDULED, *kinds))]
