"""What the front desk's pages ask of the store (issue 12): one typed query per page.

Lists are paged by a cursor, never by OFFSET: the Missed calls page by ``(ended, id)`` newest first,
the Inbox by ``(claimed?, waiting_since, number)``. Each page is one range read on an index
(``calls_missed_ended``, ``calls_did_missed_ended``, ``conversations_waiting``; migration 4 → 5)
plus a few indexed look-ups per row, so its cost does not grow with the store.
"""

from __future__ import annotations

from textbackd.core.model import (
    OPEN_STATES,
    AuditRow,
    CallFilter,
    CallListRow,
    EmailState,
    InboxRow,
    MessageState,
    StoreFacts,
    TextKind,
    ThreadItem,
)
from textbackd.store.db import Store, call_of, incoming_of, marks, message_of

CallCursor = tuple[float, str]  # (ended, id) of the last row shown
InboxCursor = tuple[int, float, str]  # (claimed 0/1, waiting_since, number)


def calls_page(store: Store, f: CallFilter, *, before: CallCursor | None = None, limit: int = 50) -> list[CallListRow]:
    """Calls newest first (missed inbound ones unless ``f.all_calls``), ``limit`` of them after ``before``."""
    where, args = [], []
    if not f.all_calls:
        where.append("c.missed = 1")
    if f.line:
        where.append("c.did = ?")
        args.append(f.line)
    if f.number:
        if f.number.startswith("+"):
            where.append("(c.caller = ? OR (c.direction = 'outbound' AND c.did = ?))" if f.all_calls else "c.caller = ?")
            args += [f.number, f.number] if f.all_calls else [f.number]
        else:
            where.append("c.caller LIKE ?")
            args.append(f"%{f.number}%")
    if f.since is not None:
        where.append("c.ended >= ?")
        args.append(f.since)
    if f.until is not None:
        where.append("c.ended < ?")
        args.append(f.until)
    if before is not None:
        where.append("(c.ended < ? OR (c.ended = ? AND c.id < ?))")
        args += [before[0], before[0], before[1]]
    if f.attention == "needs":
        where.append("c.missed = 1 AND NOT EXISTS (SELECT 1 FROM conversations v WHERE v.number = c.caller "
                     "AND v.handled_at >= c.ended)")
    elif f.attention == "handled":
        where.append("EXISTS (SELECT 1 FROM conversations v WHERE v.number = c.caller AND v.handled_at >= c.ended)")
    index = ""
    if not f.all_calls and not f.number:
        index = "INDEXED BY calls_did_missed_ended" if f.line else "INDEXED BY calls_missed_ended"
    sql = (f"SELECT c.* FROM calls c {index} WHERE {' AND '.join(where) or '1'} "
           "ORDER BY c.ended DESC, c.id DESC LIMIT ?")
    rows = [call_of(r) for r in store.db.execute(sql, (*args, limit))]
    return [_call_row(store, c) for c in rows]


def _call_row(store: Store, c) -> CallListRow:
    db = store.db
    tb = db.execute("SELECT * FROM messages WHERE call_id = ? AND kind = ? AND seq = 0", (c.id, TextKind.TEXTBACK)).fetchone()
    replied = db.execute("SELECT MIN(received_at) FROM incoming WHERE from_number = ? AND received_at > ? "
                         "AND keyword <> 'stop'", (c.caller, c.ended)).fetchone()[0]
    called_back = db.execute("SELECT MIN(answered_at) FROM calls WHERE did = ? AND direction = 'outbound' "
                             "AND outcome = 'answered' AND ended > ?", (c.caller, c.ended)).fetchone()[0]
    again = db.execute("SELECT MIN(answered_at) FROM calls WHERE caller = ? AND direction = 'inbound' "
                       "AND outcome = 'answered' AND ended > ?", (c.caller, c.ended)).fetchone()[0]
    handled = db.execute("SELECT handled_at FROM conversations WHERE number = ?", (c.caller,)).fetchone()
    return CallListRow(call=c, textback=message_of(tb) if tb else None, replied_at=replied,
                       called_back_at=called_back, answered_again_at=again,
                       handled=bool(handled and handled[0] is not None and handled[0] >= c.ended))


def recent_lines(store: Store, since: float) -> list[str]:
    """The numbers dialled by missed calls since ``since`` (the line filter's choices)."""
    return [r[0] for r in store.db.execute(
        "SELECT DISTINCT did FROM calls INDEXED BY calls_missed_ended WHERE missed = 1 AND ended >= ? "
        "AND did <> '' ORDER BY did", (since,))]


def inbox_page(store: Store, *, before: InboxCursor | None = None, limit: int = 50) -> list[InboxRow]:
    """Conversations with replies nobody answered yet: unclaimed first, then the longest waiting."""
    q = ("SELECT number, claimed_by, unread, waiting_since, last_in_at FROM conversations INDEXED BY conversations_waiting "
         "WHERE waiting_since IS NOT NULL")
    args: list = []
    if before is not None:
        q += (" AND ((claimed_by IS NOT NULL) > ? OR ((claimed_by IS NOT NULL) = ? AND (waiting_since > ? "
              "OR (waiting_since = ? AND number > ?))))")
        args += [before[0], before[0], before[1], before[1], before[2]]
    q += " ORDER BY claimed_by IS NOT NULL, waiting_since, number LIMIT ?"
    out = []
    for r in store.db.execute(q, (*args, limit)).fetchall():
        last = store.db.execute("SELECT text FROM incoming WHERE from_number = ? AND keyword <> 'stop' "
                                "ORDER BY received_at DESC LIMIT 1", (r["number"],)).fetchone()
        out.append(InboxRow(number=r["number"], caller_name=caller_name(store, r["number"]), unread=r["unread"],
                            waiting_since=r["waiting_since"], last_in_at=r["last_in_at"],
                            last_text=last[0] if last else "", claimed_by=r["claimed_by"]))
    return out


def inbox_count(store: Store) -> int:
    return store.db.execute("SELECT COUNT(*) FROM conversations INDEXED BY conversations_waiting "
                            "WHERE waiting_since IS NOT NULL").fetchone()[0]


def caller_name(store: Store, number: str) -> str:
    """The name the number's latest call gave (``""`` when none)."""
    r = store.db.execute("SELECT caller_name FROM calls WHERE caller = ? AND caller_name <> '' "
                         "ORDER BY ended DESC LIMIT 1", (number,)).fetchone()
    return r[0] if r else ""


def thread(store: Store, number: str, *, limit: int = 300) -> list[ThreadItem]:
    """Everything about one customer number in time order (the latest ``limit`` of each kind): calls
    both ways, every text with its state (a skipped decision too: it says why no text went), replies
    in (STOP/START included) and every staff action about the number."""
    db = store.db
    items: list[ThreadItem] = []
    # two indexed reads (calls_caller_ended, calls_did_ended), not one OR that scans every call
    for r in db.execute("SELECT * FROM (SELECT * FROM calls WHERE caller = ? ORDER BY ended DESC LIMIT ?) UNION ALL "
                        "SELECT * FROM (SELECT * FROM calls WHERE did = ? AND direction = 'outbound' AND caller <> ? "
                        "ORDER BY ended DESC LIMIT ?)", (number, limit, number, number, limit)):
        c = call_of(r)
        items.append(ThreadItem(at=c.ended, kind="call", call=c))
    senders = {r[0]: r[1] for r in db.execute(
        "SELECT message_id, actor FROM audit WHERE number = ? AND action = 'text_sent' AND message_id IS NOT NULL",
        (number,))}
    for r in db.execute("SELECT * FROM messages WHERE to_number = ? ORDER BY created DESC LIMIT ?", (number, limit)):
        m = message_of(r)
        items.append(ThreadItem(at=m.sent_at or m.created, kind="text", text=m, sent_by=senders.get(m.id)))
    for r in db.execute("SELECT * FROM incoming WHERE from_number = ? ORDER BY received_at DESC LIMIT ?",
                        (number, limit)):
        i = incoming_of(r)
        items.append(ThreadItem(at=i.received_at, kind="reply", reply=i))
    for r in db.execute("SELECT * FROM audit WHERE number = ? AND action <> 'text_sent' ORDER BY at DESC LIMIT ?",
                        (number, limit)):
        items.append(ThreadItem(at=r["at"], kind="action", action=AuditRow(**dict(r))))
    order = {"call": 0, "text": 1, "reply": 2, "action": 3}
    return sorted(items, key=lambda it: (it.at, order[it.kind]))


def opted_out(store: Store, number: str) -> tuple[bool, str]:
    """(active, source) of the number's opt-out."""
    r = store.db.execute("SELECT active, source FROM opt_outs WHERE number = ?", (number,)).fetchone()
    return (bool(r[0]), r[1]) if r else (False, "")


def store_facts(store: Store, now: float) -> StoreFacts:
    db = store.db
    depth = db.execute(f"SELECT COUNT(*) FROM messages WHERE state IN ({marks(OPEN_STATES)})", OPEN_STATES).fetchone()[0]
    oldest = db.execute("SELECT MIN(send_at) FROM messages WHERE state = ? AND send_at <= ?",
                        (MessageState.SCHEDULED, now)).fetchone()[0]
    q = db.execute("SELECT COUNT(*), MIN(created) FROM emails WHERE state = ?", (EmailState.QUEUED,)).fetchone()
    failed = db.execute("SELECT COUNT(*) FROM emails WHERE state = ?", (EmailState.FAILED,)).fetchone()[0]
    calls = db.execute("SELECT COUNT(*) FROM calls").fetchone()[0]
    return StoreFacts(outbox_depth=depth, oldest_due_at=oldest, emails_queued=q[0], oldest_email_at=q[1],
                      emails_failed=failed, size_bytes=store.size_bytes(), schema_version=store.schema_version,
                      calls=calls)
