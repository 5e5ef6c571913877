"""What the policy asks: a number's history at a moment (``History``), and whether a call was decided."""

from __future__ import annotations

from textbackd.core.model import GONE_STATES, NOT_COUNTED_STATES, OPEN_STATES, History, Outcome, TextKind
from textbackd.core.timeutil import to_dt
from textbackd.store.db import Store

TEXTBACK = TextKind.TEXTBACK


# The windows' filter, written literally so SQLite matches it to the partial indexes of migration 7 → 8
# (a bound parameter would not be matched); it is NOT_COUNTED_STATES, checked below.
_COUNTED = "kind = 'textback' AND state NOT IN ('skipped', 'cancelled')"
assert set(NOT_COUNTED_STATES) == {"skipped", "cancelled"} and TEXTBACK == "textback" and Outcome.ANSWERED == "answered"
assert set(GONE_STATES) == {"sent", "delivered", "unknown"} and set(OPEN_STATES) == {"scheduled", "sending"}

# One statement: each field is a sub-select on its own index (EXPLAIN QUERY PLAN in bench/README.md).
_HISTORY = f"""SELECT
    (SELECT active FROM opt_outs WHERE number = :n),
    (SELECT 1 FROM messages WHERE to_number = :n AND kind = 'textback'
        AND state IN ({",".join(f"'{s}'" for s in OPEN_STATES)}) AND id <> :ex LIMIT 1),
    (SELECT MAX(COALESCE(sent_at, send_at)) FROM messages WHERE to_number = :n AND kind = 'textback'
        AND state IN ({",".join(f"'{s}'" for s in GONE_STATES)}) AND id <> :ex),
    (SELECT MAX(received_at) FROM incoming WHERE from_number = :n AND keyword NOT IN ('stop')),
    (SELECT MAX(t) FROM (
        SELECT MAX(COALESCE(answered_at, ended)) AS t FROM calls WHERE caller = :n AND direction = 'inbound'
            AND outcome = 'answered'
        UNION ALL
        SELECT MAX(COALESCE(answered_at, ended)) FROM calls WHERE did = :n AND direction = 'outbound'
            AND outcome = 'answered')),
    (SELECT COUNT(*) FROM messages WHERE to_number = :n AND created >= :day AND {_COUNTED} AND id <> :ex),
    (SELECT COUNT(*) FROM messages WHERE substr(to_number, 1, length(to_number) - 4) = :prefix
        AND length(to_number) = length(:prefix) + 4 AND created >= :hour AND {_COUNTED} AND id <> :ex),
    (SELECT COUNT(*) FROM messages WHERE created >= :hour AND {_COUNTED} AND id <> :ex),
    (SELECT 1 FROM incoming WHERE from_number = :n AND keyword = 'automated' LIMIT 1)"""


def number_history(store: Store, number: str, now: float, prefix: str, *, exclude: int | None = None) -> History:
    """The ``History`` of ``number`` at ``now``; ``prefix`` is the policy's prefix of the number
    (all but its last 4 digits); ``exclude`` leaves one text out (the pending one being rechecked)."""
    r = store.db.execute(_HISTORY, {
        "n": number, "ex": -1 if exclude is None else exclude,
        "day": now - 86400, "hour": now - 3600, "prefix": prefix,
    }).fetchone()
    return History(
        opted_out=bool(r[0]),
        pending_textback=r[1] is not None,
        last_textback_at=to_dt(r[2]),
        last_inbound_text_at=to_dt(r[3]),
        last_answered_contact_at=to_dt(r[4]),
        texts_to_number_24h=r[5],
        texts_to_prefix_1h=r[6],
        texts_global_1h=r[7],
        automated_sender=r[8] is not None,
    )


def history_plan(store: Store) -> list[str]:
    """``EXPLAIN QUERY PLAN`` of the history statement (bench/bench_replay.py prints it)."""
    return plan(store, _HISTORY, {"n": "+12125550101", "ex": -1,
                                  "day": 0.0, "hour": 0.0, "prefix": "+1212555"})


def plan(store: Store, sql: str, args: object) -> list[str]:
    """The ``EXPLAIN QUERY PLAN`` lines of one statement, indented by depth."""
    rows = store.db.execute("EXPLAIN QUERY PLAN " + sql, args).fetchall()
    depth = {0: -1}
    out = []
    for r in rows:
        d = depth.get(r[1], -1) + 1
        depth[r[0]] = d
        out.append("  " * d + r[3])
    return out


def decided(store: Store, call_key: str) -> bool:
    """The call already has its decision (a text-back or a skip)."""
    return store.db.execute(
        "SELECT 1 FROM messages WHERE call_id=? AND kind=? LIMIT 1", (call_key, TEXTBACK)
    ).fetchone() is not None
