"""What the JSON API (``api/``) and ``textbackd token`` ask of the store: tokens, idempotent answers, and
cursor pages of calls, conversations and one conversation's texts.

Pages are keyset pages: each asks for the rows after the last one the client saw, by the columns
the list is ordered by, so a page costs the same on the first day and after years of calls.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from textbackd.core.model import (
    ApiToken,
    CallRecord,
    IncomingRecord,
    MessageRow,
    MessageState,
    TokenScope,
)
from textbackd.store.db import Store, call_of, incoming_of, message_of

# -- tokens -------------------------------------------------------------------------------


def _token(r) -> ApiToken:
    return ApiToken(name=r["name"], scope=TokenScope(r["scope"]), created=r["created"], created_by=r["created_by"],
                    last_used=r["last_used"], revoked_at=r["revoked_at"])


def add_token(store: Store, *, name: str, scope: TokenScope, token_hash: str, now: float, by: str) -> bool:
    """A new token (a revoked one's name may be used again); False when an active token has that name."""
    with store.tx():
        r = store.db.execute("SELECT revoked_at FROM api_tokens WHERE name = ?", (name,)).fetchone()
        if r is not None and r[0] is None:
            return False
        store.write("DELETE FROM api_tokens WHERE name = ?", (name,))
        store.write("INSERT INTO api_tokens (name, scope, hash, created, created_by) VALUES (?,?,?,?,?)",
                    (name, str(scope), token_hash, now, by))
    return True


def tokens(store: Store) -> list[ApiToken]:
    return [_token(r) for r in store.db.execute("SELECT * FROM api_tokens ORDER BY name")]


def token_by_hash(store: Store, token_hash: str) -> ApiToken | None:
    """The active token with this SHA-256 (revoked ones do not authenticate)."""
    r = store.db.execute("SELECT * FROM api_tokens WHERE hash = ? AND revoked_at IS NULL", (token_hash,)).fetchone()
    return _token(r) if r else None


def revoke_token(store: Store, name: str, *, now: float) -> bool:
    cur = store.write("UPDATE api_tokens SET revoked_at = ? WHERE name = ? AND revoked_at IS NULL", (now, name))
    return cur.rowcount == 1


def touch_token(store: Store, name: str, *, now: float) -> None:
    store.write("UPDATE api_tokens SET last_used = ? WHERE name = ?", (now, name))


# -- Idempotency-Key --------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class StoredAnswer:
    request: str  # the hash of the request that got it
    status: int
    body: Any


def answer_for(store: Store, token: str, key: str) -> StoredAnswer | None:
    r = store.db.execute("SELECT request, status, response FROM api_idempotency WHERE token = ? AND key = ?",
                         (token, key)).fetchone()
    return StoredAnswer(r["request"], r["status"], json.loads(r["response"])) if r else None


def keep_answer(store: Store, *, token: str, key: str, request: str, status: int, body: Any, now: float) -> None:
    store.write("INSERT INTO api_idempotency (token, key, request, status, response, created) VALUES (?,?,?,?,?,?)",
                (token, key, request, status, json.dumps(body, ensure_ascii=False), now))


def forget_answers(store: Store, before: float) -> int:
    """Idempotency keys are kept for a day (as Stripe does); older ones go."""
    return store.write("DELETE FROM api_idempotency WHERE created < ?", (before,)).rowcount


# -- pages ------------------------------------------------------------------------------------


def calls_page(store: Store, *, limit: int, after: tuple[float, str] | None = None, since: float | None = None,
               until: float | None = None, missed: bool | None = None, number: str | None = None,
               line: str | None = None, outcome: str | None = None) -> list[tuple[CallRecord, MessageRow | None]]:
    """Calls newest first (by ``ended``, then id), each with its text-back decision; ``after`` = the last (ended, id) seen."""
    q, args = "SELECT * FROM calls WHERE 1=1", []
    if after is not None:
        q += " AND (ended < ? OR (ended = ? AND id < ?))"
        args += [after[0], after[0], after[1]]
    if since is not None:
        q += " AND ended >= ?"
        args.append(since)
    if until is not None:
        q += " AND ended < ?"
        args.append(until)
    if missed is not None:
        q += " AND missed = ?"
        args.append(int(missed))
    if number:
        q += " AND (caller = ? OR did = ?)"
        args += [number, number]
    if line:
        q += " AND did = ?"
        args.append(line)
    if outcome:
        q += " AND outcome = ?"
        args.append(outcome)
    q += " ORDER BY ended DESC, id DESC LIMIT ?"
    args.append(limit)
    out = []
    for r in store.db.execute(q, args).fetchall():
        call = call_of(r)
        m = store.db.execute("SELECT * FROM messages WHERE call_id = ? AND kind = 'textback' LIMIT 1",
                             (call.id,)).fetchone()
        out.append((call, message_of(m) if m else None))
    return out


@dataclass(frozen=True, slots=True)
class ConversationItem:
    number: str
    last_activity_at: float
    name: str  # the latest call's caller_name (a contact's name when known)


def conversations_page(store: Store, *, limit: int, after: tuple[float, str] | None = None) -> list[ConversationItem]:
    """Numbers with a missed call, a text or a reply, latest activity first; ``after`` = the last (time, number) seen."""
    q = f"""SELECT number, MAX(t) AS last_at FROM (
              SELECT to_number AS number, created AS t FROM messages WHERE state <> '{MessageState.SKIPPED}'
              UNION ALL SELECT from_number, received_at FROM incoming
              UNION ALL SELECT caller, ended FROM calls WHERE missed = 1)
            WHERE number LIKE '+%' GROUP BY number"""
    args: list[Any] = []
    if after is not None:
        q += " HAVING last_at < ? OR (last_at = ? AND number < ?)"
        args += [after[0], after[0], after[1]]
    q += " ORDER BY last_at DESC, number DESC LIMIT ?"
    args.append(limit)
    out = []
    for r in store.db.execute(q, args).fetchall():
        name = store.db.execute("SELECT caller_name FROM calls WHERE caller = ? ORDER BY ended DESC LIMIT 1",
                                (r["number"],)).fetchone()
        out.append(ConversationItem(r["number"], r["last_at"], name[0] if name else ""))
    return out


def thread_page(store: Store, number: str, *, limit: int, after: tuple[float, str, int] | None = None
                ) -> list[tuple[float, MessageRow | IncomingRecord]]:
    """A conversation's texts both ways (decisions that were never texts left out), newest first;
    ``after`` = the last (time, "in"|"out", id) seen."""
    q = f"""SELECT * FROM (
              SELECT 'out' AS dir, id, created AS at FROM messages WHERE to_number = ? AND state <> '{MessageState.SKIPPED}'
              UNION ALL SELECT 'in', id, received_at FROM incoming WHERE from_number = ?)"""
    args: list[Any] = [number, number]
    if after is not None:
        q += " WHERE (at, dir, id) < (?, ?, ?)"
        args += list(after)
    q += " ORDER BY at DESC, dir DESC, id DESC LIMIT ?"
    args.append(limit)
    out: list[tuple[float, MessageRow | IncomingRecord]] = []
    for r in store.db.execute(q, args).fetchall():
        if r["dir"] == "out":
            out.append((r["at"], message_of(store.db.execute("SELECT * FROM messages WHERE id = ?", (r["id"],)).fetchone())))
        else:
            out.append((r["at"], incoming_of(store.db.execute("SELECT * FROM incoming WHERE id = ?", (r["id"],)).fetchone())))
    return out


def known_number(store: Store, number: str) -> bool:
    """The store has a call from, a text to or a reply from ``number``."""
    return store.db.execute(
        """SELECT EXISTS (SELECT 1 FROM calls WHERE caller = ?) OR EXISTS (SELECT 1 FROM messages WHERE to_number = ?)
           OR EXISTS (SELECT 1 FROM incoming WHERE from_number = ?)""", (number, number, number)).fetchone()[0] == 1


__all__: Sequence[str] = [
    "add_token", "tokens", "token_by_hash", "revoke_token", "touch_token", "StoredAnswer", "answer_for", "keep_answer",
    "forget_answers", "calls_page", "ConversationItem", "conversations_page", "thread_page", "known_number",
]
