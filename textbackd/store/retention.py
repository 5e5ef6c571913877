"""Retention and privacy: purge old rows, export one number's data, forget a number.

``purge(store, cutoff)``: deletes calls that ended, texts created, replies
received and staff e-mails created before ``cutoff``, with their state
history. Texts still ``scheduled``/``sending`` and e-mails still queued are
kept (they are work in progress, not history). Opt-outs are kept: an active
opt-out is only ``number, active, changed_at, source`` (no message content);
its event history and inactive (resubscribed) opt-outs older than the cutoff
go. Staff actions (``audit``) older than the cutoff go too, and so does a
conversation's claim/handled mark once both are older.

``forget(store, number)``: an erasure request. Every call from or to the
number, every text to it, every reply from it, every staff e-mail naming
it, every staff action about it and its claim/handled mark are deleted (the
erasure itself is audited without the number). If the number had opted out, that one row is kept (source
``forgotten``) so STOP still holds; it is the minimum needed to honour the
opt-out. We keep it in clear rather than hashed: a hash of a phone number is
reversed by trying the few billion possible numbers, so it would only look
more private.

``export(store, number)``: everything the store holds about the number (an
access request), as plain JSON-able dicts.
"""

from __future__ import annotations

import json
from typing import Any

from textbackd.core.model import OPEN_STATES, EmailState
from textbackd.store.db import Store

OPEN = "(" + ",".join(f"'{s}'" for s in OPEN_STATES) + ")"  # the outbox's work in progress, kept


def purge(store: Store, cutoff: float, *, now: float | None = None) -> dict[str, int]:
    """Delete history older than ``cutoff`` (UTC seconds); counts per table."""
    counts: dict[str, int] = {}
    with store.tx() as db:
        counts["messages"] = db.execute(
            f"DELETE FROM messages WHERE created < ? AND state NOT IN {OPEN}", (cutoff,)
        ).rowcount
        counts["incoming"] = db.execute("DELETE FROM incoming WHERE received_at < ?", (cutoff,)).rowcount
        counts["calls"] = db.execute(
            f"""DELETE FROM calls WHERE ended < ? AND id NOT IN
                (SELECT call_id FROM messages WHERE call_id IS NOT NULL AND state IN {OPEN})""",
            (cutoff,),
        ).rowcount
        counts["emails"] = db.execute(
            "DELETE FROM emails WHERE created < ? AND state <> ?", (cutoff, EmailState.QUEUED)
        ).rowcount
        counts["opt_out_events"] = db.execute("DELETE FROM opt_out_events WHERE at < ?", (cutoff,)).rowcount
        counts["opt_outs"] = db.execute(
            "DELETE FROM opt_outs WHERE active = 0 AND changed_at < ?", (cutoff,)
        ).rowcount
        counts["audit"] = db.execute("DELETE FROM audit WHERE at < ?", (cutoff,)).rowcount
        counts["conversations"] = db.execute(
            "DELETE FROM conversations WHERE MAX(COALESCE(claimed_at, 0), COALESCE(handled_at, 0), "
            "COALESCE(last_in_at, 0)) < ?", (cutoff,)
        ).rowcount
        counts["login_attempts"] = db.execute("DELETE FROM login_attempts WHERE at < ?", (cutoff,)).rowcount
        # issue 14: webhook events (copies of calls and texts) go with them, once no endpoint still waits for one
        counts["events"] = db.execute(
            """DELETE FROM events WHERE at < ? AND NOT EXISTS
               (SELECT 1 FROM webhook_deliveries d WHERE d.event_id = events.id AND d.state = 'pending')""",
            (cutoff,),
        ).rowcount
    return counts


def _like(number: str) -> list[str]:
    digits = number.lstrip("+")
    return [f"%{number}%", f"%{digits}%"] if digits != number else [f"%{number}%"]


def _email_ids(store: Store, number: str) -> list[int]:
    ids: set[int] = set()
    for pat in _like(number):
        for r in store.db.execute(
            "SELECT id FROM emails WHERE subject LIKE ? OR body LIKE ? OR headers LIKE ?", (pat, pat, pat)
        ):
            ids.add(r[0])
    return sorted(ids)


def export(store: Store, number: str) -> dict[str, Any]:
    """Everything stored about ``number`` (E.164)."""
    db = store.db
    calls = [dict(r) for r in db.execute(
        """SELECT * FROM calls WHERE caller = ? OR (direction = 'outbound' AND did = ?) ORDER BY started""",
        (number, number),
    )]
    messages = []
    for r in db.execute("SELECT * FROM messages WHERE to_number = ? ORDER BY id", (number,)):
        m = dict(r)
        m["refs"] = json.loads(m.get("refs") or "[]")
        m["history"] = [dict(e) for e in db.execute(
            "SELECT at, state, detail FROM message_events WHERE message_id = ? ORDER BY id", (m["id"],)
        )]
        messages.append(m)
    incoming = [dict(r) for r in db.execute(
        "SELECT * FROM incoming WHERE from_number = ? ORDER BY received_at", (number,)
    )]
    opt = db.execute("SELECT * FROM opt_outs WHERE number = ?", (number,)).fetchone()
    opt_events = [dict(r) for r in db.execute(
        "SELECT at, active, source FROM opt_out_events WHERE number = ? ORDER BY id", (number,)
    )]
    emails = []
    for eid in _email_ids(store, number):
        e = dict(db.execute("SELECT id, kind, to_addrs, subject, body, state, created, sent_at FROM emails WHERE id=?",
                            (eid,)).fetchone())
        e["to_addrs"] = json.loads(e["to_addrs"] or "[]")
        emails.append(e)
    audit = [dict(r) for r in db.execute(
        "SELECT at, actor, action, message_id, detail FROM audit WHERE number = ? ORDER BY id", (number,)
    )]
    conv = db.execute("SELECT claimed_by, claimed_at, handled_by, handled_at FROM conversations WHERE number = ?",
                      (number,)).fetchone()
    return {
        "number": number,
        "conversation": dict(conv) if conv else None,
        "staff_actions": audit,
        "calls": calls,
        "texts": messages,
        "replies": incoming,
        "opt_out": dict(opt) if opt else None,
        "opt_out_history": opt_events,
        "emails": emails,
    }


def forget(store: Store, number: str, *, now: float) -> dict[str, int]:
    """Erase ``number``; keep only an active opt-out (see the module docstring). Counts per table."""
    emails = _email_ids(store, number)
    counts: dict[str, int] = {}
    with store.tx() as db:
        counts["texts"] = db.execute("DELETE FROM messages WHERE to_number = ?", (number,)).rowcount
        counts["replies"] = db.execute("DELETE FROM incoming WHERE from_number = ?", (number,)).rowcount
        counts["calls"] = db.execute(
            "DELETE FROM calls WHERE caller = ? OR (direction = 'outbound' AND did = ?)", (number, number)
        ).rowcount
        counts["emails"] = sum(db.execute("DELETE FROM emails WHERE id = ?", (i,)).rowcount for i in emails)
        db.execute("DELETE FROM opt_out_events WHERE number = ?", (number,))
        counts["staff_actions"] = db.execute("DELETE FROM audit WHERE number = ?", (number,)).rowcount
        # issue 14: webhook events naming it (their deliveries go with them: nothing more is sent about it)
        counts["events"] = db.execute("DELETE FROM events WHERE data LIKE ?", (f'%"{number}"%',)).rowcount
        db.execute("DELETE FROM conversations WHERE number = ?", (number,))
        opted = db.execute("SELECT active FROM opt_outs WHERE number = ?", (number,)).fetchone()
        if opted and opted[0]:
            db.execute("UPDATE opt_outs SET source = 'forgotten', changed_at = ? WHERE number = ?", (now, number))
            counts["opt_out_kept"] = 1
        else:
            db.execute("DELETE FROM opt_outs WHERE number = ?", (number,))
            counts["opt_out_kept"] = 0
    return counts
