"""What the outbox (and the delivery reports that come back for it) ask of the store: the parts of
a text as its sender took them (issue 18: a crash costs no text; issue 13: a multipart text resumes).

A text has two marks, not one:

* *claimed*: the row is ``sending`` (``Store.transition``, before the sender is called);
* *handed over*: a ``message_parts`` row per part, committed (``synchronous=FULL``) by
  ``hand_over`` *before* the sender writes the byte that is the point of no return. The
  sender's answer makes the part ``accepted`` (``accept``) or ``refused`` (``refuse``).

So after a crash (``recover_interrupted``) a ``sending`` text with no part in doubt is sent
again (only its missing parts, with the same reference), one whose every part was accepted is
``sent``, and only a part handed over without an answer leaves a text ``unknown``. Every mark
is also a ``message_events`` row, in the same transaction.

``copy`` 0 is the current copy of a text; a staff resend (``supersede``) moves the parts so far
to copy 1 (and older ones further back), so the next send starts afresh and the history stays.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from textbackd.core.model import MessageRow, MessageState, PartState, SendProgress
from textbackd.store.db import Store, message_of


@dataclass(frozen=True, slots=True)
class Part:
    """One ``message_parts`` row."""

    message_id: int
    copy: int
    part: int
    total: int
    sender: str
    concat_ref: int | None
    state: PartState
    ref: str | None
    expected_ref: str | None
    tries: int
    handed_at: float
    answered_at: float | None
    delivered_at: float | None
    detail: str

    def to_json(self) -> dict:
        return {k: (str(v) if k == "state" else v) for k, v in
                ((f, getattr(self, f)) for f in self.__dataclass_fields__)}


@dataclass(frozen=True, slots=True)
class Recovered:
    """What ``recover_interrupted`` did with each text a crash left ``sending``."""

    unknown: list[MessageRow] = field(default_factory=list)  # a part in doubt and nothing left to send
    resumed: list[MessageRow] = field(default_factory=list)  # scheduled again: nothing (or not all) went out
    sent: list[MessageRow] = field(default_factory=list)  # every part had been accepted


def _part(r: sqlite3.Row) -> Part:
    d = dict(r)
    d["state"] = PartState(d["state"])
    return Part(**d)


def _label(part: int, total: int) -> str:
    return "" if total <= 1 else f"part {part}/{total} "


def parts(store: Store, mid: int, *, copy: int | None = 0) -> list[Part]:
    """The parts of a text (the current copy; ``copy=None``: every copy), in order."""
    if copy is None:
        rows = store.db.execute("SELECT * FROM message_parts WHERE message_id = ? ORDER BY copy, part", (mid,))
    else:
        rows = store.db.execute(
            "SELECT * FROM message_parts WHERE message_id = ? AND copy = ? ORDER BY part", (mid, copy))
    return [_part(r) for r in rows]


def progress_of(rows: Sequence[Part]) -> SendProgress | None:
    """The ``SendProgress`` of a copy's parts; None while no part went out (nothing to resume)."""
    out = [p for p in rows if p.state is not PartState.REFUSED]
    if not out:
        return None
    first = out[0]
    ref = next((p.concat_ref for p in rows if p.concat_ref is not None), None)
    return SendProgress(
        sender=first.sender,
        total=max(p.total for p in rows),
        concat_ref=ref,
        accepted=tuple((p.part, p.ref or "") for p in out if p.state is PartState.ACCEPTED),
        in_doubt=tuple(p.part for p in out if p.state is PartState.HANDED_OVER),
    )


def progress(store: Store, mid: int) -> SendProgress | None:
    return progress_of(parts(store, mid))


def _event(store: Store, mid: int, now: float, detail: str, state: MessageState = MessageState.SENDING) -> None:
    store.db.execute(
        "INSERT INTO message_events (message_id, at, state, detail) VALUES (?,?,?,?)", (mid, now, str(state), detail)
    )


def hand_over(
    store: Store,
    mid: int,
    *,
    part: int,
    total: int,
    sender: str,
    now: float,
    concat_ref: int | None = None,
    expected_ref: str | None = None,
) -> None:
    """The point-of-no-return mark of one part, committed before the sender writes it (StoreError if not)."""
    with store.tx():
        store.db.execute(
            """INSERT INTO message_parts (message_id, copy, part, total, sender, concat_ref, state, expected_ref,
               handed_at) VALUES (?, 0, ?, ?, ?, ?, ?, ?, ?)
               ON CONFLICT(message_id, copy, part) DO UPDATE SET total = excluded.total, sender = excluded.sender,
               concat_ref = excluded.concat_ref, state = excluded.state, expected_ref = excluded.expected_ref,
               tries = tries + 1, handed_at = excluded.handed_at, answered_at = NULL, ref = NULL, detail = ''""",
            (mid, part, total, sender, concat_ref, str(PartState.HANDED_OVER), expected_ref, now),
        )
        _event(store, mid, now, f"{_label(part, total)}handed over to {sender}")


def accept(store: Store, mid: int, *, part: int, ref: str, sender: str, now: float, detail: str = "") -> None:
    """The sender took the part (``+CMGS: <mr>``, a 2xx): its reference, so reports find the text."""
    with store.tx():
        row = store.db.execute("SELECT total FROM message_parts WHERE message_id = ? AND copy = 0 AND part = ?",
                               (mid, part)).fetchone()
        total = row["total"] if row else 1
        store.db.execute(
            "UPDATE message_parts SET state = ?, ref = ?, answered_at = ?, detail = ? "
            "WHERE message_id = ? AND copy = 0 AND part = ?",
            (str(PartState.ACCEPTED), ref, now, detail, mid, part),
        )
        store.db.execute(
            "INSERT OR IGNORE INTO message_refs (sender, ref, message_id, at) VALUES (?,?,?,?)", (sender, ref, mid, now)
        )
        if total > 1 or detail:  # a one-part text's acceptance is its `sent` (or, after a crash, recovery's)
            _event(store, mid, now, detail or f"{_label(part, total)}accepted by {sender} (ref {ref})")


def refuse(store: Store, mid: int, part_numbers: Iterable[int], *, sender: str, detail: str, now: float) -> int:
    """The sender answered these handed-over parts with an error: they did not go out. How many moved."""
    nums = sorted(set(part_numbers))
    if not nums:
        return 0
    with store.tx():
        n = 0
        for p in nums:
            n += store.db.execute(
                "UPDATE message_parts SET state = ?, answered_at = ?, detail = ? "
                "WHERE message_id = ? AND copy = 0 AND part = ? AND state = ?",
                (str(PartState.REFUSED), now, detail[:300], mid, p, str(PartState.HANDED_OVER)),
            ).rowcount
        if n:
            what = ", ".join(map(str, nums))
            _event(store, mid, now, f"part {what} refused by {sender}, not sent: {detail}"[:500])
    return n


def supersede(store: Store, mid: int) -> int:
    """A staff resend: the parts so far become history (copy n → n + 1); the next send starts afresh."""
    with store.tx():
        store.db.execute("UPDATE message_parts SET copy = -(copy + 1) WHERE message_id = ?", (mid,))
        return store.db.execute("UPDATE message_parts SET copy = -copy WHERE message_id = ? AND copy < 0",
                                (mid,)).rowcount


RESEND_MARK = "resend requested"  # the start of the event a staff resend writes (``resent`` looks for it)


def mark_resend(store: Store, m: MessageRow, *, now: float, source: str, expires_at: float) -> bool:
    """A staff resend of an ``unknown`` or ``failed`` text: its parts become history, the row is due now.
    False when the text changed meanwhile."""
    supersede(store, m.id)
    return store.transition(
        m.id, MessageState.SCHEDULED, now=now, expect=m.state, send_at=now, expires_at=expires_at, attempts=0,
        detail=f"{RESEND_MARK} ({source}): sent again on purpose, the caller may get a second copy",
    )


def resent(store: Store, mid: int) -> bool:
    """Did staff ask for this text to be sent again? (Then only an opt-out or a block stops it.)"""
    r = store.db.execute("SELECT 1 FROM message_events WHERE message_id = ? AND detail LIKE ? LIMIT 1",
                         (mid, RESEND_MARK + "%")).fetchone()
    return r is not None


# -- after a crash -------------------------------------------------------------------------


def recover_interrupted(store: Store, now: float) -> Recovered:
    """At start: decide every text a crash left ``sending`` by its parts (see the module docstring)."""
    rows = [message_of(r) for r in store.db.execute("SELECT * FROM messages WHERE state = ?", (MessageState.SENDING,))]
    out = Recovered()
    for m in rows:
        ps = parts(store, m.id)
        prog = progress_of(ps)
        if prog is None:
            if store.transition(m.id, MessageState.SCHEDULED, now=now, expect=MessageState.SENDING, send_at=now,
                                detail="interrupted before it was handed over: sending it again"):
                out.resumed.append(m)
        elif prog.missing:
            why = f"interrupted after {prog.describe()}: sending the rest ({_parts_words(prog.missing)}) with the same reference"
            if store.transition(m.id, MessageState.SCHEDULED, now=now, expect=MessageState.SENDING, send_at=now,
                                detail=why):
                out.resumed.append(m)
        elif prog.in_doubt:
            if store.transition(m.id, MessageState.UNKNOWN, now=now, expect=MessageState.SENDING, sender=prog.sender,
                                refs=[r for _, r in prog.accepted], segments=prog.total,
                                detail=doubt_reason(prog, "the daemon stopped")):
                out.unknown.append(store.message(m.id))
        else:
            if store.transition(m.id, MessageState.SENT, now=now, expect=MessageState.SENDING, sender=prog.sender,
                                refs=[r for _, r in prog.accepted], segments=prog.total, sent_at=now,
                                detail=f"via {prog.sender} (every part accepted before the daemon stopped)"):
                out.sent.append(m)
    return out


def doubt_reason(prog: SendProgress, what: str) -> str:
    """Why a text is ``unknown``: which part may not have arrived, and through which sender."""
    which = _parts_words(prog.in_doubt)
    if prog.total <= 1:
        return f"{prog.sender}: {what} after handing it over, before its answer: it may or may not have gone out"
    return f"{prog.sender}: {prog.describe()}: {what} after handing over {which}, before its answer"


def _parts_words(nums: Sequence[int]) -> str:
    return ("part " if len(nums) == 1 else "parts ") + ", ".join(map(str, nums))


# -- delivery reports ------------------------------------------------------------------------


def match_report(store: Store, sender: str, ref: str, recipient: str, *, now: float) -> MessageRow | None:
    """The text a delivery report is about: by a reference we were given, else a part in doubt.

    A part handed over without an answer has no reference, but the sender often knows which
    one it would get (Kannel: our own id; a modem: the next TP-MR, since they run in order), and
    a modem's report names the recipient. A part found this way is ``accepted`` now: the network
    says it went out.
    """
    m = store.message_by_ref(sender, ref)
    if m is not None:
        return m
    base = """SELECT p.message_id, p.part, p.total FROM message_parts p JOIN messages m ON m.id = p.message_id
              WHERE p.sender = ? AND p.state = ? AND p.copy = 0"""
    args: list = [sender, str(PartState.HANDED_OVER)]
    row = store.db.execute(
        base + " AND p.expected_ref = ?" + (" AND m.to_number = ?" if recipient else "") + " ORDER BY p.handed_at DESC LIMIT 1",
        [*args, ref, *([recipient] if recipient else [])],
    ).fetchone()
    if row is None and recipient:
        row = store.db.execute(base + " AND p.expected_ref IS NULL AND m.to_number = ? ORDER BY p.handed_at DESC LIMIT 1",
                               [*args, recipient]).fetchone()
    if row is None:
        return None
    accept(store, row["message_id"], part=row["part"], ref=ref, sender=sender, now=now,
           detail=f"{_label(row['part'], row['total'])}went out after all: the network reported it (ref {ref})")
    return store.message(row["message_id"])


def part_delivered(store: Store, mid: int, sender: str, ref: str, at: float) -> bool:
    """Record a part's delivery; True when the text is delivered whole (every part of the current
    copy reported), or when the text has no parts recorded (a text from before they were kept)."""
    with store.tx():
        store.db.execute(
            "UPDATE message_parts SET delivered_at = ? WHERE message_id = ? AND sender = ? AND ref = ? AND delivered_at IS NULL",
            (at, mid, sender, ref),
        )
        r = store.db.execute(
            "SELECT COUNT(*) AS n, MAX(total) AS total, SUM(delivered_at IS NOT NULL) AS done FROM message_parts "
            "WHERE message_id = ? AND copy = 0", (mid,)).fetchone()
    if not r["n"]:
        return True
    return r["done"] >= r["total"]


def parts_json(store: Store, mid: int) -> list[dict]:
    """Every copy's parts of a text, for ``messages --json``."""
    return [p.to_json() for p in parts(store, mid, copy=None)]


__all__ = [
    "RESEND_MARK", "Part", "Recovered", "accept", "doubt_reason", "hand_over", "mark_resend", "match_report",
    "part_delivered", "parts", "parts_json", "progress", "progress_of", "recover_interrupted", "refuse", "resent",
    "supersede",
]
