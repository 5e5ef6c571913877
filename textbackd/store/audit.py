"""The audit trail: one row per staff action, written by ``staff/actions.py`` (and the web and API
for logins and tokens). Read by ``textbackd audit``, the conversation page and ``export``."""

from __future__ import annotations

from textbackd.core.model import AuditAction, AuditRow
from textbackd.store.db import Store


def record(store: Store, *, at: float, actor: str, action: AuditAction | str, number: str | None = None,
           message_id: int | None = None, detail: str = "") -> int:
    cur = store.write(
        "INSERT INTO audit (at, actor, action, number, message_id, detail) VALUES (?,?,?,?,?,?)",
        (at, actor, str(action), number, message_id, detail),
    )
    return int(cur.lastrowid)


def rows(store: Store, *, since: float | None = None, number: str | None = None, actor: str | None = None,
         limit: int = 100) -> list[AuditRow]:
    """Newest first."""
    q, args = "SELECT * FROM audit WHERE 1=1", []
    if since is not None:
        q += " AND at >= ?"
        args.append(since)
    if number:
        q += " AND number = ?"
        args.append(number)
    if actor:
        q += " AND actor = ?"
        args.append(actor)
    q += " ORDER BY at DESC, id DESC LIMIT ?"
    args.append(limit)
    return [AuditRow(**dict(r)) for r in store.db.execute(q, args)]
