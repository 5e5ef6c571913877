"""SQLite store: every call, text (with its full state history), reply and opt-out.

It is the single source of truth that survives restarts. One writer (the
daemon's event loop thread); the CLI opens the same file read-mostly. WAL mode,
``synchronous=FULL`` (a text's ``sending`` mark, and each part's hand-over mark
(``store/outbox.py``), must reach the disk before the bytes leave for the modem,
or a power cut could send it twice), foreign keys on.

Schema versions live in ``PRAGMA user_version`` (``schema.py``). This module holds the
connection, the transaction helper and the rows everyone shares (calls, texts and their
history, replies, opt-outs, the mail queue, the tracker's checkpoint). Queries asked by
one part of the house live beside it, named after who asks: ``history.py`` (the
policy), ``conversations.py`` (replies, staff texts, the threads), ``followups.py``,
``mail.py`` (the notifier), ``outbox.py`` (the parts of a text, crash recovery), ``figures.py`` (the owner's figures), ``retention.py``.
They return the model's types (``core/model.py``), never ``sqlite3.Row``; SQL is
written nowhere else.

Times are stored as UTC seconds since the epoch (REAL) so windows are plain
comparisons; the CLI formats them.
"""

from __future__ import annotations

import json
import os
import sqlite3
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from textbackd.core.errors import StoreError
from textbackd.core.model import (
    OPEN_STATES,
    Call,
    CallRecord,
    EmailRow,
    EmailState,
    EventType,
    IncomingRecord,
    MessageEvent,
    MessageRow,
    MessageState,
)
from textbackd.core.timeutil import iso, to_dt, to_ts
from textbackd.store import events
from textbackd.store.schema import MIGRATIONS, SCHEMA_VERSION, TRANSITIONS, _split_sql

__all__ = ["Store", "MessageRow", "CallRecord", "SCHEMA_VERSION", "TRANSITIONS", "call_key", "to_dt", "marks"]


# the webhook event of each state a text can reach (issue 14); other states are not told
_TEXT_EVENTS = {
    MessageState.SCHEDULED: EventType.TEXT_SCHEDULED,
    MessageState.SENT: EventType.TEXT_SENT,
    MessageState.DELIVERED: EventType.TEXT_DELIVERED,
    MessageState.FAILED: EventType.TEXT_FAILED,
}


def call_key(call: Call) -> str:
    return f"{call.pbx}:{call.id}"


def marks(values: Sequence[Any]) -> str:
    """``?,?,?`` for an ``IN (...)`` of ``values``."""
    return ",".join("?" * len(values))


def message_of(r: sqlite3.Row) -> MessageRow:
    d = dict(r)
    d["state"] = MessageState(d["state"])
    d["refs"] = tuple(json.loads(d["refs"] or "[]"))
    return MessageRow(**d)


def call_of(r: sqlite3.Row) -> CallRecord:
    d = dict(r)
    d["missed"], d["voicemail_left"] = bool(d["missed"]), bool(d["voicemail_left"])
    return CallRecord(**d)


def incoming_of(r: sqlite3.Row) -> IncomingRecord:
    return IncomingRecord(**dict(r))


def email_of(r: sqlite3.Row) -> EmailRow:
    d = dict(r)
    d["to_addrs"] = tuple(json.loads(d["to_addrs"] or "[]"))
    d["headers"] = json.loads(d["headers"] or "{}")
    d["state"] = EmailState(d["state"])
    return EmailRow(**d)


class Store:
    """The daemon's database. Not thread-safe: use it from one thread (the event loop)."""

    def __init__(self, path: str | Path, *, readonly: bool = False) -> None:
        self.path = str(path)
        try:
            if self.path not in (":memory:", "") and not readonly:
                Path(self.path).parent.mkdir(parents=True, exist_ok=True)
            uri = f"file:{self.path}?mode=ro" if readonly else self.path
            self.db = sqlite3.connect(uri, uri=readonly, isolation_level=None, timeout=10.0)
            self.db.row_factory = sqlite3.Row
            self.db.execute("PRAGMA foreign_keys = ON")
            if self.path == "":  # scratch(): nothing here must survive a crash
                self.db.execute("PRAGMA journal_mode = MEMORY")
                self.db.execute("PRAGMA synchronous = OFF")
            elif not readonly:
                self.db.execute("PRAGMA journal_mode = WAL")
                self.db.execute("PRAGMA synchronous = FULL")
            self._migrate(readonly)
        except sqlite3.Error as e:
            raise StoreError(f"{self.path}: cannot open the database: {e}") from None
        except OSError as e:
            raise StoreError(f"{self.path}: cannot create its folder: {e.strerror}") from None

    @classmethod
    def scratch(cls) -> Store:
        """A throw-away store for ``replay``: SQLite's private temporary file (deleted on close; its pages live
        in a small cache, so a month's replay does not grow in RAM), never synced. Use it with ``batch()``."""
        return cls("")

    @contextmanager
    def batch(self) -> Iterator[None]:
        """Many writes as one transaction: every ``tx()`` inside joins it (``replay`` commits every few
        hundred calls). Only for a store nobody else writes: the daemon commits each change on its own."""
        with self.tx():
            yield

    # -- schema ---------------------------------------------------------------------

    def _migrate(self, readonly: bool) -> None:
        version = self.db.execute("PRAGMA user_version").fetchone()[0]
        if version > SCHEMA_VERSION:
            raise StoreError(
                f"{self.path}: written by a newer textbackd (schema {version}, this one knows "
                f"{SCHEMA_VERSION}); upgrade textbackd or restore a backup"
            )
        if version == SCHEMA_VERSION:
            return
        if readonly:
            raise StoreError(f"{self.path}: schema {version} needs migrating; start the daemon once")
        with self.tx():
            for i in range(version, SCHEMA_VERSION):
                for stmt in _split_sql(MIGRATIONS[i]):
                    self.db.execute(stmt)
            self.db.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")

    @property
    def schema_version(self) -> int:
        return self.db.execute("PRAGMA user_version").fetchone()[0]

    @contextmanager
    def tx(self) -> Iterator[sqlite3.Connection]:
        """One write transaction. Nested ``tx()`` blocks join the outer one (so a staff action, its
        audit row and what it changes commit together or not at all)."""
        if self.db.in_transaction:
            yield self.db
            return
        try:
            self.db.execute("BEGIN IMMEDIATE")
        except sqlite3.Error as e:
            raise StoreError(f"{self.path}: cannot write: {e}") from None
        try:
            yield self.db
        except BaseException:
            self._rollback()
            raise
        else:
            try:
                self.db.execute("COMMIT")
            except sqlite3.Error as e:
                self._rollback()
                raise StoreError(f"{self.path}: cannot write: {e}") from None

    def _rollback(self) -> None:
        """Undo the open transaction. SQLite may already have rolled it back itself (a full disk does that):
        then there is nothing to undo, and the error that caused it is the one to report."""
        if self.db.in_transaction:
            try:
                self.db.execute("ROLLBACK")
            except sqlite3.Error:
                pass

    def close(self) -> None:
        self.db.close()

    def write(self, sql: str, args: Sequence[Any] = ()) -> sqlite3.Cursor:
        """One statement that writes (for the store room's query modules); StoreError when the disk refuses."""
        return self._write(sql, args)

    def _write(self, sql: str, args: Sequence[Any] = ()) -> sqlite3.Cursor:
        try:
            return self.db.execute(sql, args)
        except sqlite3.IntegrityError:
            raise
        except sqlite3.Error as e:
            raise StoreError(f"{self.path}: cannot write: {e}") from None

    # -- calls ----------------------------------------------------------------------

    def record_call(self, call: Call, *, now: float | None = None) -> bool:
        """Store a finished call; False when it was already there (replayed or resynced).

        A new inbound call is also a ``call.missed`` or ``call.answered`` event (issue 14), in the same
        transaction. ``caller_name`` is the contact's name when the pipeline found one, ``carrier_name``
        what the PBX said."""
        key = call_key(call)
        recorded = time.time() if now is None else now
        with self.tx():
            cur = self._write(
                """INSERT OR IGNORE INTO calls (id, pbx, direction, outcome, missed, caller, caller_raw,
                   caller_name, did, started, answered_at, ended, ring_seconds, voicemail_left, voicemail_box,
                   answered_by, queue, channel, recorded_at, carrier_name)
                   VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)""",
                (
                    key,
                    call.pbx,
                    str(call.direction),
                    str(call.outcome),
                    int(call.missed),
                    call.caller,
                    call.caller_raw,
                    call.caller_name,
                    call.did,
                    call.started.timestamp(),
                    to_ts(call.answered_at),
                    call.ended.timestamp(),
                    call.ring_seconds,
                    int(call.voicemail_left),
                    call.voicemail_box,
                    call.answered_by,
                    call.queue,
                    call.channel,
                    recorded,
                    call.caller_name if call.carrier_name is None else call.carrier_name,
                ),
            )
            new = cur.rowcount == 1
            if new and str(call.direction) == "inbound":
                etype = EventType.CALL_MISSED if call.missed else EventType.CALL_ANSWERED
                events.record(self.db, etype, lambda: self.get_call(key).to_public(), at=recorded)
        return new

    def get_call(self, key: str) -> CallRecord | None:
        r = self.db.execute("SELECT * FROM calls WHERE id = ?", (key,)).fetchone()
        return call_of(r) if r else None

    def calls(self, *, limit: int = 50, since: float | None = None, number: str | None = None,
              missed: bool = False) -> list[CallRecord]:
        q, args = "SELECT * FROM calls WHERE 1=1", []
        if since is not None:
            q += " AND ended >= ?"
            args.append(since)
        if number:
            q += " AND (caller = ? OR did = ?)"
            args += [number, number]
        if missed:
            q += " AND missed = 1"
        q += " ORDER BY ended DESC LIMIT ?"
        args.append(limit)
        return [call_of(r) for r in self.db.execute(q, args)]

    def textback_of(self, call_key: str) -> MessageRow | None:
        """The decision recorded for a call (its text-back, or the skip with its reason)."""
        r = self.db.execute("SELECT * FROM messages WHERE call_id=? AND kind='textback' LIMIT 1", (call_key,)).fetchone()
        return message_of(r) if r else None

    # -- messages -------------------------------------------------------------------

    def add_message(
        self,
        *,
        to: str,
        kind: str,
        state: MessageState,
        now: float,
        send_at: float | None = None,
        call_id: str | None = None,
        text: str = "",
        template: str = "",
        line_did: str = "",
        reason: str = "",
        sender_pref: str = "",
        segments: int = 0,
        encoding: str = "",
        expires_at: float | None = None,
        seq: int = 0,
    ) -> int | None:
        """Insert a text (or a skip record). None when this call already has one of this kind."""
        try:
            with self.tx():
                cur = self.db.execute(
                    """INSERT INTO messages (call_id, kind, to_number, text, template, line_did, state,
                       reason, sender_pref, segments, encoding, created, send_at, updated, expires_at, seq)
                       VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)""",
                    (
                        call_id,
                        kind,
                        to,
                        text,
                        template,
                        line_did,
                        str(state),
                        reason,
                        sender_pref,
                        segments,
                        encoding,
                        now,
                        now if send_at is None else send_at,
                        now,
                        expires_at,
                        seq,
                    ),
                )
                mid = int(cur.lastrowid)
                self.db.execute(
                    "INSERT INTO message_events (message_id, at, state, detail) VALUES (?,?,?,?)",
                    (mid, now, str(state), reason),
                )
                self._text_event(mid, state, now)
                return mid
        except sqlite3.IntegrityError:
            return None

    def message(self, mid: int) -> MessageRow:
        r = self.db.execute("SELECT * FROM messages WHERE id = ?", (mid,)).fetchone()
        if r is None:
            raise StoreError(f"no message {mid}")
        return message_of(r)

    def messages(
        self, *, limit: int = 50, since: float | None = None, number: str | None = None, states: Sequence[str] = ()
    ) -> list[MessageRow]:
        q, args = "SELECT * FROM messages WHERE 1=1", []
        if since is not None:
            q += " AND created >= ?"
            args.append(since)
        if number:
            q += " AND to_number = ?"
            args.append(number)
        if states:
            q += f" AND state IN ({','.join('?' * len(states))})"
            args += list(states)
        q += " ORDER BY created DESC, id DESC LIMIT ?"
        args.append(limit)
        return [message_of(r) for r in self.db.execute(q, args)]

    def message_events(self, mid: int) -> list[MessageEvent]:
        return [MessageEvent(r["at"], r["state"], r["detail"]) for r in self.db.execute(
            "SELECT at, state, detail FROM message_events WHERE message_id = ? ORDER BY id", (mid,))]

    def state_counts(self) -> dict[tuple[str, str], int]:
        """How many texts of each (kind, state)."""
        return {(r[0], r[1]): r[2] for r in self.db.execute(
            "SELECT kind, state, COUNT(*) FROM messages GROUP BY kind, state")}

    def transition(
        self,
        mid: int,
        new: MessageState,
        *,
        now: float,
        detail: str = "",
        expect: MessageState | Sequence[MessageState] | None = None,
        **fields: Any,
    ) -> bool:
        """Move a message to ``new`` and record the change; False when it was not in ``expect``.

        The check and the update are one statement, so two workers (or a worker
        and a cancel) can never both win.
        """
        cur = self.message(mid)
        if new not in TRANSITIONS[cur.state] and new != cur.state:
            if expect is None:
                raise StoreError(f"message {mid}: {cur.state} → {new} is not allowed")
            return False
        exp = [expect] if isinstance(expect, MessageState) else list(expect or [cur.state])
        sets = ["state = ?", "updated = ?"]
        args: list[Any] = [str(new), now]
        if detail and new in (MessageState.FAILED, MessageState.CANCELLED, MessageState.EXPIRED, MessageState.UNKNOWN):
            sets.append("reason = ?")
            args.append(detail)
        for k, v in fields.items():
            if k == "refs":
                v = json.dumps(list(v))
            sets.append(f"{k} = ?")
            args.append(v)
        with self.tx():
            c = self.db.execute(
                f"UPDATE messages SET {', '.join(sets)} WHERE id = ? AND state IN ({','.join('?' * len(exp))})",
                (*args, mid, *[str(s) for s in exp]),
            )
            if c.rowcount != 1:
                return False
            self.db.execute(
                "INSERT INTO message_events (message_id, at, state, detail) VALUES (?,?,?,?)",
                (mid, now, str(new), detail),
            )
            if "refs" in fields and fields.get("sender") is not None:
                for ref in json.loads(args[sets.index("refs = ?")]):
                    self.db.execute(
                        "INSERT OR IGNORE INTO message_refs (sender, ref, message_id, at) VALUES (?,?,?,?)",
                        (fields["sender"], str(ref), mid, now),
                    )
            if cur.state is not new and new is not MessageState.SCHEDULED:  # a retry is not news
                self._text_event(mid, new, now)
        return True

    def _text_event(self, mid: int, state: MessageState, now: float) -> None:
        """The ``text.*`` event of a state change, inside its transaction (issue 14)."""
        etype = _TEXT_EVENTS.get(state)
        if etype is not None:
            events.record(self.db, etype, lambda: self.message(mid).to_public(), at=now)

    def due_messages(self, now: float, *, limit: int = 100) -> list[MessageRow]:
        rows = self.db.execute(
            "SELECT * FROM messages WHERE state = ? AND send_at <= ? ORDER BY send_at, id LIMIT ?",
            (MessageState.SCHEDULED, now, limit),
        ).fetchall()
        return [message_of(r) for r in rows]

    def next_due_at(self) -> float | None:
        return self.db.execute("SELECT MIN(send_at) FROM messages WHERE state = ?", (MessageState.SCHEDULED,)).fetchone()[0]

    def message_by_ref(self, sender: str, ref: str) -> MessageRow | None:
        """The most recent message a sender acknowledged with ``ref`` (TP-MRs wrap at 256)."""
        r = self.db.execute(
            """SELECT m.* FROM message_refs r JOIN messages m ON m.id = r.message_id
               WHERE r.sender = ? AND r.ref = ? ORDER BY r.at DESC LIMIT 1""",
            (sender, ref),
        ).fetchone()
        return message_of(r) if r else None

    def outbox_depth(self) -> int:
        return self.db.execute(f"SELECT COUNT(*) FROM messages WHERE state IN ({marks(OPEN_STATES)})", OPEN_STATES).fetchone()[0]

    def oldest_due(self, now: float) -> float | None:
        return self.db.execute(
            "SELECT MIN(send_at) FROM messages WHERE state = ? AND send_at <= ?", (MessageState.SCHEDULED, now)
        ).fetchone()[0]

    # -- incoming texts and opt-outs --------------------------------------------------

    def record_incoming(
        self,
        *,
        sender: str,
        from_number: str,
        text: str,
        received_at: float,
        to_number: str | None = None,
        provider_id: str | None = None,
        call_id: str | None = None,
        keyword: str = "",
    ) -> int | None:
        """Store a received text; None when the provider already delivered this one."""
        try:
            with self.tx():
                cur = self._write(
                    """INSERT INTO incoming (sender, from_number, to_number, text, received_at, provider_id,
                       call_id, keyword) VALUES (?,?,?,?,?,?,?,?)""",
                    (sender, from_number, to_number, text, received_at, provider_id, call_id, keyword),
                )
                iid = int(cur.lastrowid)
                r = self.db.execute("SELECT * FROM incoming WHERE id = ?", (iid,)).fetchone()
                events.record(self.db, EventType.REPLY_RECEIVED, incoming_of(r).to_public(), at=received_at)
        except sqlite3.IntegrityError:
            return None
        return iid

    def incoming(self, *, number: str | None = None, limit: int = 50) -> list[IncomingRecord]:
        if number:
            rows = self.db.execute(
                "SELECT * FROM incoming WHERE from_number = ? ORDER BY received_at DESC LIMIT ?", (number, limit))
        else:
            rows = self.db.execute("SELECT * FROM incoming ORDER BY received_at DESC LIMIT ?", (limit,))
        return [incoming_of(r) for r in rows]

    def set_opt_out(self, number: str, active: bool, *, now: float, source: str) -> None:
        with self.tx():
            self.db.execute(
                """INSERT INTO opt_outs (number, active, changed_at, source) VALUES (?,?,?,?)
                   ON CONFLICT(number) DO UPDATE SET active = excluded.active,
                   changed_at = excluded.changed_at, source = excluded.source""",
                (number, int(active), now, source),
            )
            self.db.execute(
                "INSERT INTO opt_out_events (number, at, active, source) VALUES (?,?,?,?)",
                (number, now, int(active), source),
            )
            events.record(self.db, EventType.OPTOUT_CHANGED,
                          {"number": number, "active": active, "changed_at": iso(to_dt(now)), "source": source}, at=now)

    def is_opted_out(self, number: str) -> bool:
        r = self.db.execute("SELECT active FROM opt_outs WHERE number = ?", (number,)).fetchone()
        return bool(r and r[0])

    # -- e-mail queue -----------------------------------------------------------------

    def queue_email(
        self, *, kind: str, to: Sequence[str], subject: str, body: str, now: float, headers: dict | None = None
    ) -> int:
        cur = self._write(
            """INSERT INTO emails (kind, to_addrs, subject, body, headers, state, created, next_try)
               VALUES (?,?,?,?,?,?,?,?)""",
            (kind, json.dumps(list(to)), subject, body, json.dumps(headers or {}), EmailState.QUEUED, now, now),
        )
        return int(cur.lastrowid)

    def due_emails(self, now: float, limit: int = 20) -> list[EmailRow]:
        return [email_of(r) for r in self.db.execute(
            "SELECT * FROM emails WHERE state = ? AND next_try <= ? ORDER BY id LIMIT ?", (EmailState.QUEUED, now, limit))]

    def next_email_at(self) -> float | None:
        return self.db.execute("SELECT MIN(next_try) FROM emails WHERE state = ?", (EmailState.QUEUED,)).fetchone()[0]

    def email_done(self, eid: int, *, now: float, ok: bool, error: str = "", retry_at: float | None = None) -> None:
        if ok:
            self._write("UPDATE emails SET state=?, sent_at=?, attempts=attempts+1 WHERE id=?", (EmailState.SENT, now, eid))
        elif retry_at is not None:
            self._write(
                "UPDATE emails SET attempts=attempts+1, next_try=?, last_error=? WHERE id=?", (retry_at, error, eid)
            )
        else:
            self._write("UPDATE emails SET state=?, attempts=attempts+1, last_error=? WHERE id=?",
                        (EmailState.FAILED, error, eid))

    # -- tracker state ----------------------------------------------------------------

    def save_tracker_state(self, pbx: str, snapshot: list, *, now: float) -> None:
        self._write(
            """INSERT INTO tracker_state (pbx, snapshot, saved_at) VALUES (?,?,?)
               ON CONFLICT(pbx) DO UPDATE SET snapshot = excluded.snapshot, saved_at = excluded.saved_at""",
            (pbx, json.dumps(snapshot), now),
        )

    def load_tracker_state(self, pbx: str) -> tuple[list, float] | None:
        r = self.db.execute("SELECT snapshot, saved_at FROM tracker_state WHERE pbx = ?", (pbx,)).fetchone()
        if r is None:
            return None
        try:
            return json.loads(r["snapshot"]), r["saved_at"]
        except ValueError:
            return None

    # -- housekeeping -----------------------------------------------------------------

    def probe_write(self) -> None:
        """Write one page (the header, unchanged) to prove the disk takes writes; StoreError if not."""
        with self.tx():
            self._write(f"PRAGMA user_version = {SCHEMA_VERSION}")

    def size_bytes(self) -> int:
        if self.path == ":memory:":
            return 0
        total = 0
        for suffix in ("", "-wal"):
            p = Path(self.path + suffix)
            if p.exists():
                total += p.stat().st_size
        return total


def file_schema(path: str) -> str:
    """What ``PRAGMA user_version`` the store file at ``path`` holds, said in words; never creates or changes a file.

    With the daemon stopped the file is read as immutable (no ``-shm``/``-wal`` is made,
    so root reading it leaves nothing the daemon's user cannot open); while the daemon
    runs (its ``-wal`` and ``-shm`` exist) it is read through them, as the CLI does.
    """
    if not os.path.exists(path):
        return "no store yet"
    live = os.path.exists(path + "-wal") and os.path.exists(path + "-shm")
    try:
        db = sqlite3.connect(f"file:{path}?{'mode=ro' if live else 'immutable=1'}", uri=True)
        try:
            version = db.execute("PRAGMA user_version").fetchone()[0]
        finally:
            db.close()
    except sqlite3.Error as e:
        return f"cannot read it ({e})"
    if version > SCHEMA_VERSION:
        return f"schema {version}, written by a newer textbackd: this one refuses it (restore a backup, or upgrade)"
    if version < SCHEMA_VERSION:
        return f"schema {version}, migrated to {SCHEMA_VERSION} when the daemon starts"
    return f"schema {version}"
