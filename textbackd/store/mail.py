"""What the staff-mail notifier asks of the store (its own queue is in ``db.py``)."""

from __future__ import annotations

import json

from textbackd.core.model import GONE_STATES, CallRecord, MessageRow, TextKind
from textbackd.store.db import Store, call_of, marks, message_of


def escalation_candidates(store: Store, sent_before: float, sent_after: float) -> list[MessageRow]:
    """Text-backs sent in ``[sent_after, sent_before]`` that no escalation mail names yet."""
    rows = store.db.execute(
        f"""SELECT m.* FROM messages m
           WHERE m.kind=? AND m.state IN ({marks(GONE_STATES)}) AND m.call_id IS NOT NULL
             AND m.sent_at <= ? AND m.sent_at >= ?
             AND NOT EXISTS (SELECT 1 FROM emails e WHERE e.kind='escalation'
                             AND json_extract(e.headers, '$._call') = m.call_id)""",
        (TextKind.TEXTBACK, *GONE_STATES, sent_before, sent_after),
    )
    return [message_of(r) for r in rows]


def period_mailed(store: Store, kind: str, period: str) -> bool:
    """A mail of ``kind`` (summary, digest) for ``period`` is already queued or sent."""
    return store.db.execute(
        "SELECT 1 FROM emails WHERE kind=? AND json_extract(headers, '$._period') = ?", (kind, period)
    ).fetchone() is not None


def missed_calls(store: Store, since: float, until: float) -> list[CallRecord]:
    """Inbound missed calls that ended in ``[since, until)``, oldest first."""
    return [call_of(r) for r in store.db.execute(
        "SELECT * FROM calls WHERE direction='inbound' AND missed=1 AND ended>=? AND ended<? ORDER BY ended",
        (since, until))]


def reply_token(store: Store, token: str, since: float) -> dict[str, str] | None:
    """The bookkeeping headers of the mail that carried Reply-To ``token`` (written since ``since``)."""
    r = store.db.execute(
        "SELECT headers FROM emails WHERE json_extract(headers, '$._token') = ? AND created >= ? LIMIT 1",
        (token, since),
    ).fetchone()
    return json.loads(r["headers"]) if r else None
