"""Events for webhooks out: written in the same transaction as the change they describe.

``record`` is called by the store's own write methods (``Store.record_call``, ``add_message``,
``transition``, ``record_incoming``, ``set_opt_out``, ``conversations.set_handled``) inside their
transaction. It writes one ``events`` row and one ``webhook_deliveries`` row for each endpoint of
the config that wants that type and is not disabled; when no endpoint wants it, nothing is
written (an office without webhooks stores no events). This is the outbox pattern again: the
change and its event commit together or not at all, so a crash can neither lose an event nor
invent one, and the delivery worker (``webhooks/``) only ever reads rows.

This module imports nothing of the store (``db.py`` imports it): it is handed the connection.
"""

from __future__ import annotations

import json
import sqlite3
import uuid
from collections.abc import Callable
from typing import Any

from textbackd.core.model import DeliveryState, EventType

__all__ = ["record", "new_uid"]


def new_uid() -> str:
    """A ``webhook-id``: unique across stores and restarts (a receiver drops duplicates by it)."""
    return f"msg_{uuid.uuid4().hex}"


def record(
    db: sqlite3.Connection, type: EventType, data: dict[str, Any] | Callable[[], dict[str, Any]], *, at: float
) -> int | None:
    """Queue ``type`` with ``data`` for every endpoint that wants it; the event's id, or None when none does.

    ``data`` may be a function making it, called only when an endpoint wants the event (an office without
    webhooks, and every ``replay``, never builds it). Must run inside the caller's write transaction
    (``Store.tx()``).
    """
    wanted = [r[0] for r in db.execute(
        """SELECT name FROM webhook_endpoints WHERE active = 1 AND disabled_at IS NULL
           AND EXISTS (SELECT 1 FROM json_each(webhook_endpoints.events) WHERE value = ?)""",
        (str(type),),
    )]
    if not wanted:
        return None
    if callable(data):
        data = data()
    cur = db.execute(
        "INSERT INTO events (uid, type, at, data) VALUES (?,?,?,?)",
        (new_uid(), str(type), at, json.dumps(data, ensure_ascii=False, separators=(",", ":"))),
    )
    eid = int(cur.lastrowid)
    db.executemany(
        "INSERT INTO webhook_deliveries (endpoint, event_id, state, created, next_try) VALUES (?,?,?,?,?)",
        [(name, eid, str(DeliveryState.PENDING), at, at) for name in wanted],
    )
    return eid
