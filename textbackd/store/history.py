"""What the policy asks: a number's history at a moment (``History``), and whether a call was decided."""

from __future__ import annotations

from textbackd.core.model import GONE_STATES, NOT_COUNTED_STATES, OPEN_STATES, History, Outcome, TextKind
from textbackd.core.timeutil import to_dt
from textbackd.store.db import Store, marks

TEXTBACK = TextKind.TEXTBACK


def number_history(store: Store, number: str, now: float, prefix: str, *, exclude: int | None = None) -> History:
    """The ``History`` of ``number`` at ``now``; ``prefix`` is the policy's prefix of the number
    (all but its last 4 digits); ``exclude`` leaves one text out (the pending one being rechecked)."""
    db = store.db
    ex = -1 if exclude is None else exclude
    pending = db.execute(
        f"SELECT 1 FROM messages WHERE to_number=? AND kind=? AND state IN ({marks(OPEN_STATES)}) AND id<>? LIMIT 1",
        (number, TEXTBACK, *OPEN_STATES, ex),
    ).fetchone()
    last = db.execute(
        f"""SELECT MAX(COALESCE(sent_at, send_at)) FROM messages WHERE to_number=? AND kind=?
           AND state IN ({marks(GONE_STATES)}) AND id<>?""",
        (number, TEXTBACK, *GONE_STATES, ex),
    ).fetchone()[0]
    inbound = db.execute(
        "SELECT MAX(received_at) FROM incoming WHERE from_number=? AND keyword NOT IN ('stop')", (number,)
    ).fetchone()[0]
    answered = db.execute(
        """SELECT MAX(COALESCE(answered_at, ended)) FROM calls WHERE outcome=?
           AND ((direction='inbound' AND caller=?) OR (direction='outbound' AND did=?))""",
        (Outcome.ANSWERED, number, number),
    ).fetchone()[0]
    counted = f"state NOT IN ({marks(NOT_COUNTED_STATES)}) AND kind=? AND id<>?"
    cargs = (*NOT_COUNTED_STATES, TEXTBACK, ex)
    n24 = db.execute(
        f"SELECT COUNT(*) FROM messages WHERE to_number=? AND created>=? AND {counted}", (number, now - 86400, *cargs)
    ).fetchone()[0]
    p1 = db.execute(
        f"SELECT COUNT(*) FROM messages WHERE to_number LIKE ? AND created>=? AND {counted}",
        (prefix + "____", now - 3600, *cargs),
    ).fetchone()[0]
    g1 = db.execute(f"SELECT COUNT(*) FROM messages WHERE created>=? AND {counted}", (now - 3600, *cargs)).fetchone()[0]
    auto = db.execute(
        "SELECT 1 FROM incoming WHERE from_number=? AND keyword='automated' LIMIT 1", (number,)
    ).fetchone()
    return History(
        opted_out=store.is_opted_out(number),
        pending_textback=pending is not None,
        last_textback_at=to_dt(last),
        last_inbound_text_at=to_dt(inbound),
        last_answered_contact_at=to_dt(answered),
        texts_to_number_24h=n24,
        texts_to_prefix_1h=p1,
        texts_global_1h=g1,
        automated_sender=auto is not None,
    )


def decided(store: Store, call_key: str) -> bool:
    """The call already has its decision (a text-back or a skip)."""
    return store.db.execute(
        "SELECT 1 FROM messages WHERE call_id=? AND kind=? LIMIT 1", (call_key, TEXTBACK)
    ).fetchone() is not None
