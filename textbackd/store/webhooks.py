"""What the webhook deliveries (``webhooks/``) and ``textbackd webhooks`` ask of the store.

The rows are written by ``store/events.py`` inside the transaction of the change they describe;
here they are synced with the config, read head first per endpoint (in event order), and moved
``pending → delivered | failed``.
"""

from __future__ import annotations

import json
from collections.abc import Iterable

from textbackd.core.model import DeliveryRow, DeliveryState, EndpointStatus, EventRow
from textbackd.store.db import Store

PENDING, DELIVERED, FAILED = (str(s) for s in DeliveryState)


def sync_endpoints(store: Store, endpoints: Iterable[tuple[str, tuple[str, ...]]]) -> dict[str, int]:
    """Make the endpoints table match the config: ``(name, events)`` active, every other one inactive
    (its waiting deliveries stay, and go out if it comes back). Returns the pending count of each
    endpoint no longer configured."""
    wanted = {name: list(events) for name, events in endpoints}
    with store.tx():
        for name, events in wanted.items():
            store.write(
                """INSERT INTO webhook_endpoints (name, events, active) VALUES (?,?,1)
                   ON CONFLICT(name) DO UPDATE SET events = excluded.events, active = 1""",
                (name, json.dumps(events)),
            )
        gone: dict[str, int] = {}
        for r in store.db.execute("SELECT name FROM webhook_endpoints WHERE active = 1").fetchall():
            if r["name"] not in wanted:
                store.write("UPDATE webhook_endpoints SET active = 0 WHERE name = ?", (r["name"],))
                gone[r["name"]] = pending_count(store, r["name"])
    return gone


def pending_count(store: Store, endpoint: str) -> int:
    return store.db.execute(
        "SELECT COUNT(*) FROM webhook_deliveries WHERE endpoint = ? AND state = ?", (endpoint, PENDING)
    ).fetchone()[0]


def _delivery(r) -> DeliveryRow:
    event = EventRow(id=r["event_id"], uid=r["uid"], type=r["type"], at=r["at"], data=json.loads(r["data"]))
    return DeliveryRow(
        id=r["id"], endpoint=r["endpoint"], event=event, state=DeliveryState(r["state"]), attempts=r["attempts"],
        created=r["created"], next_try=r["next_try"], delivered_at=r["delivered_at"], last_status=r["last_status"],
        last_error=r["last_error"],
    )


def head(store: Store, endpoint: str) -> DeliveryRow | None:
    """The oldest event still waiting for ``endpoint``: the only one that may be sent (in order, one at a time)."""
    r = store.db.execute(
        """SELECT d.*, e.uid, e.type, e.at, e.data FROM webhook_deliveries d JOIN events e ON e.id = d.event_id
           WHERE d.endpoint = ? AND d.state = ? ORDER BY d.event_id LIMIT 1""",
        (endpoint, PENDING),
    ).fetchone()
    return _delivery(r) if r else None


def next_try(store: Store, endpoint: str) -> float | None:
    """When the head of ``endpoint``'s queue is due (None: nothing waits)."""
    h = head(store, endpoint)
    return h.next_try if h else None


def delivered(store: Store, did: int, *, now: float, status: int) -> None:
    store.write(
        "UPDATE webhook_deliveries SET state=?, attempts=attempts+1, delivered_at=?, last_status=?, last_error='' "
        "WHERE id=? AND state=?",
        (DELIVERED, now, status, did, PENDING),
    )


def retry(store: Store, did: int, *, at: float, status: int | None, error: str) -> None:
    store.write(
        "UPDATE webhook_deliveries SET attempts=attempts+1, next_try=?, last_status=?, last_error=? WHERE id=? AND state=?",
        (at, status, error[:300], did, PENDING),
    )


def fail(store: Store, did: int, *, status: int | None, error: str) -> None:
    store.write(
        "UPDATE webhook_deliveries SET state=?, attempts=attempts+1, last_status=?, last_error=? WHERE id=? AND state=?",
        (FAILED, status, error[:300], did, PENDING),
    )


def disable(store: Store, endpoint: str, *, now: float, reason: str) -> int:
    """The endpoint is gone (410): it gets no new events, and what waited for it fails. Returns how many."""
    with store.tx():
        store.write("UPDATE webhook_endpoints SET disabled_at=?, disabled_reason=? WHERE name=?",
                    (now, reason[:300], endpoint))
        cur = store.write(
            "UPDATE webhook_deliveries SET state=?, last_error=? WHERE endpoint=? AND state=?",
            (FAILED, f"endpoint disabled: {reason}"[:300], endpoint, PENDING),
        )
    return cur.rowcount


def enable(store: Store, endpoint: str) -> bool:
    """Deliver new events to a disabled endpoint again; False when there is no such endpoint."""
    cur = store.write("UPDATE webhook_endpoints SET disabled_at=NULL, disabled_reason='' WHERE name=?", (endpoint,))
    return cur.rowcount == 1


def disabled(store: Store, endpoint: str) -> bool:
    r = store.db.execute("SELECT disabled_at FROM webhook_endpoints WHERE name=?", (endpoint,)).fetchone()
    return bool(r and r[0] is not None)


def status(store: Store, now: float) -> list[EndpointStatus]:
    """Every endpoint the store knows, with its queue (for ``textbackd webhooks list`` and ``/metrics``)."""
    out = []
    for e in store.db.execute("SELECT * FROM webhook_endpoints ORDER BY name").fetchall():
        name = e["name"]
        counts = {r[0]: r[1] for r in store.db.execute(
            "SELECT state, COUNT(*) FROM webhook_deliveries WHERE endpoint=? GROUP BY state", (name,))}
        due = store.db.execute(
            "SELECT COUNT(*) FROM webhook_deliveries WHERE endpoint=? AND state=? AND next_try<=?",
            (name, PENDING, now),
        ).fetchone()[0]
        h = head(store, name)
        last_err = store.db.execute(
            "SELECT last_error FROM webhook_deliveries WHERE endpoint=? AND last_error<>'' ORDER BY id DESC LIMIT 1",
            (name,),
        ).fetchone()
        last_ok = store.db.execute(
            "SELECT MAX(delivered_at) FROM webhook_deliveries WHERE endpoint=? AND state=?", (name, DELIVERED)
        ).fetchone()[0]
        out.append(EndpointStatus(
            name=name, active=bool(e["active"]), disabled_at=e["disabled_at"], disabled_reason=e["disabled_reason"],
            pending=counts.get(PENDING, 0), due=due, failing=bool(h and h.attempts > 0),
            delivered=counts.get(DELIVERED, 0), failed=counts.get(FAILED, 0),
            last_error=(h.last_error if h and h.last_error else (last_err[0] if last_err else "")),
            last_delivered_at=last_ok,
        ))
    return out


def deliveries(store: Store, endpoint: str, *, limit: int = 1000) -> list[DeliveryRow]:
    """An endpoint's deliveries in event order (tests and ``webhooks list --json``)."""
    return [_delivery(r) for r in store.db.execute(
        """SELECT d.*, e.uid, e.type, e.at, e.data FROM webhook_deliveries d JOIN events e ON e.id = d.event_id
           WHERE d.endpoint = ? ORDER BY d.event_id LIMIT ?""",
        (endpoint, limit),
    )]

