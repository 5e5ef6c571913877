"""SQLite store: every call, text (with its full state history), reply and opt-out.

It is the single source of truth that survives restarts. One writer (the
daemon's event loop thread); the CLI opens the same file read-mostly. WAL mode,
``synchronous=FULL`` (a text's ``sending`` mark must reach the disk before the
bytes leave for the modem, or a power cut could send it twice), foreign keys on.

Schema versions live in ``PRAGMA user_version``. ``MIGRATIONS[i]`` takes a
database from version ``i`` to ``i + 1``; opening an older file migrates it in
one transaction, opening a newer one is refused (an older textbackd must not
write a schema it does not know).

Times are stored as UTC seconds since the epoch (REAL) so windows are plain
comparisons; the CLI formats them.
"""

from __future__ import annotations

import json
import sqlite3
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from textbackd.core.errors import StoreError
from textbackd.core.model import Call, MessageState

MIGRATIONS: tuple[str, ...] = (
    # 0 → 1: the first schema
    """
    CREATE TABLE calls (
        id            TEXT PRIMARY KEY,          -- "<pbx>:<pbx call id>"
        pbx           TEXT NOT NULL,
        direction     TEXT NOT NULL,
        outcome       TEXT NOT NULL,
        missed        INTEGER NOT NULL,
        caller        TEXT NOT NULL,
        caller_raw    TEXT NOT NULL,
        caller_name   TEXT NOT NULL DEFAULT '',
        did           TEXT NOT NULL DEFAULT '',
        started       REAL NOT NULL,
        answered_at   REAL,
        ended         REAL NOT NULL,
        ring_seconds  REAL NOT NULL DEFAULT 0,
        voicemail_left INTEGER NOT NULL DEFAULT 0,
        voicemail_box TEXT,
        answered_by   TEXT,
        queue         TEXT,
        channel       TEXT,
        recorded_at   REAL NOT NULL
    );
    CREATE INDEX calls_caller_ended ON calls(caller, ended);
    CREATE INDEX calls_did_ended ON calls(did, ended);
    CREATE INDEX calls_ended ON calls(ended);

    CREATE TABLE messages (
        id            INTEGER PRIMARY KEY,
        call_id       TEXT REFERENCES calls(id) ON DELETE SET NULL,
        kind          TEXT NOT NULL,             -- textback | followup | confirm | help | staff
        to_number     TEXT NOT NULL,
        text          TEXT NOT NULL DEFAULT '',
        template      TEXT NOT NULL DEFAULT '',
        line_did      TEXT NOT NULL DEFAULT '',
        state         TEXT NOT NULL,
        reason        TEXT NOT NULL DEFAULT '',  -- why skipped / failed / cancelled
        sender_pref   TEXT NOT NULL DEFAULT '',
        sender        TEXT NOT NULL DEFAULT '',  -- the sender that took it
        segments      INTEGER NOT NULL DEFAULT 0,
        encoding      TEXT NOT NULL DEFAULT '',
        refs          TEXT NOT NULL DEFAULT '[]',-- provider ids / TP-MRs, JSON list
        attempts      INTEGER NOT NULL DEFAULT 0,
        created       REAL NOT NULL,
        send_at       REAL NOT NULL,
        updated       REAL NOT NULL,
        sent_at       REAL,
        delivered_at  REAL,
        expires_at    REAL,
        seq           INTEGER NOT NULL DEFAULT 0 -- follow-up number
    );
    -- one text-back per call, whatever happens (restart, duplicate events)
    CREATE UNIQUE INDEX messages_one_per_call ON messages(call_id, kind, seq) WHERE call_id IS NOT NULL;
    CREATE INDEX messages_due ON messages(state, send_at);
    CREATE INDEX messages_to ON messages(to_number, created);

    CREATE TABLE message_events (
        id         INTEGER PRIMARY KEY,
        message_id INTEGER NOT NULL REFERENCES messages(id) ON DELETE CASCADE,
        at         REAL NOT NULL,
        state      TEXT NOT NULL,
        detail     TEXT NOT NULL DEFAULT ''
    );
    CREATE INDEX message_events_msg ON message_events(message_id);

    CREATE TABLE message_refs (
        sender     TEXT NOT NULL,
        ref        TEXT NOT NULL,
        message_id INTEGER NOT NULL REFERENCES messages(id) ON DELETE CASCADE,
        at         REAL NOT NULL,
        PRIMARY KEY (sender, ref, at)
    );
    CREATE INDEX message_refs_lookup ON message_refs(sender, ref);

    CREATE TABLE incoming (
        id          INTEGER PRIMARY KEY,
        sender      TEXT NOT NULL,
        from_number TEXT NOT NULL,
        to_number   TEXT,
        text        TEXT NOT NULL,
        received_at REAL NOT NULL,
        provider_id TEXT,
        call_id     TEXT REFERENCES calls(id) ON DELETE SET NULL,
        keyword     TEXT NOT NULL DEFAULT ''
    );
    CREATE UNIQUE INDEX incoming_provider ON incoming(sender, provider_id) WHERE provider_id IS NOT NULL;
    CREATE INDEX incoming_from ON incoming(from_number, received_at);

    CREATE TABLE opt_outs (
        number     TEXT PRIMARY KEY,
        active     INTEGER NOT NULL,
        changed_at REAL NOT NULL,
        source     TEXT NOT NULL
    );
    CREATE TABLE opt_out_events (
        id       INTEGER PRIMARY KEY,
        number   TEXT NOT NULL,
        at       REAL NOT NULL,
        active   INTEGER NOT NULL,
        source   TEXT NOT NULL
    );

    CREATE TABLE emails (
        id         INTEGER PRIMARY KEY,
        kind       TEXT NOT NULL,
        to_addrs   TEXT NOT NULL,               -- JSON list
        subject    TEXT NOT NULL,
        body       TEXT NOT NULL,
        headers    TEXT NOT NULL DEFAULT '{}',  -- JSON object
        state      TEXT NOT NULL,               -- queued | sent | failed
        attempts   INTEGER NOT NULL DEFAULT 0,
        created    REAL NOT NULL,
        next_try   REAL NOT NULL,
        sent_at    REAL,
        last_error TEXT NOT NULL DEFAULT ''
    );
    CREATE INDEX emails_due ON emails(state, next_try);
    """,
    # 1 → 2: the policy's per-prefix and global hourly caps (pipeline.history) and retention's purge
    # select texts by `created` alone; without this index each of them scans every text ever stored
    # (bench/bench_pipeline.py: 10,000 texts, 1.7 ms → 0.2 ms per history lookup)
    """
    CREATE INDEX IF NOT EXISTS messages_created ON messages(created);
    """,
    # 2 → 3: the tracker's open calls, so a call in progress when the daemon dies and ending
    # before it is back is still reported (service.py saves, restores; the resync closes it)
    """
    CREATE TABLE tracker_state (
        pbx      TEXT PRIMARY KEY,
        snapshot TEXT NOT NULL,     -- JSON list from Tracker.snapshot()
        saved_at REAL NOT NULL
    );
    """,
)

SCHEMA_VERSION = len(MIGRATIONS)

# Which state may follow which. Anything else is a bug and refused.
TRANSITIONS: dict[MessageState, frozenset[MessageState]] = {
    MessageState.SCHEDULED: frozenset(
        {MessageState.SENDING, MessageState.CANCELLED, MessageState.EXPIRED, MessageState.FAILED}
    ),
    MessageState.SENDING: frozenset(
        {MessageState.SENT, MessageState.SCHEDULED, MessageState.FAILED, MessageState.UNKNOWN}
    ),
    MessageState.SENT: frozenset({MessageState.DELIVERED, MessageState.FAILED}),
    MessageState.UNKNOWN: frozenset({MessageState.SENT, MessageState.DELIVERED, MessageState.FAILED}),
    MessageState.DELIVERED: frozenset(),
    MessageState.FAILED: frozenset({MessageState.DELIVERED}),  # a late DLR can prove us wrong
    MessageState.CANCELLED: frozenset(),
    MessageState.SKIPPED: frozenset(),
    MessageState.EXPIRED: frozenset(),
}


@dataclass(frozen=True, slots=True)
class MessageRow:
    id: int
    call_id: str | None
    kind: str
    to_number: str
    text: str
    template: str
    line_did: str
    state: MessageState
    reason: str
    sender_pref: str
    sender: str
    segments: int
    encoding: str
    refs: tuple[str, ...]
    attempts: int
    created: float
    send_at: float
    updated: float
    sent_at: float | None
    delivered_at: float | None
    expires_at: float | None
    seq: int

    @classmethod
    def from_row(cls, r: sqlite3.Row) -> MessageRow:
        d = dict(r)
        d["state"] = MessageState(d["state"])
        d["refs"] = tuple(json.loads(d["refs"] or "[]"))
        return cls(**d)


def _ts(dt: datetime | float | None) -> float | None:
    if dt is None:
        return None
    if isinstance(dt, datetime):
        return dt.timestamp()
    return float(dt)


def to_dt(ts: float | None) -> datetime | None:
    return None if ts is None else datetime.fromtimestamp(ts, tz=timezone.utc)


def call_key(call: Call) -> str:
    return f"{call.pbx}:{call.id}"


class Store:
    """The daemon's database. Not thread-safe: use it from one thread (the event loop)."""

    def __init__(self, path: str | Path, *, readonly: bool = False) -> None:
        self.path = str(path)
        try:
            if self.path != ":memory:" and not readonly:
                Path(self.path).parent.mkdir(parents=True, exist_ok=True)
            uri = f"file:{self.path}?mode=ro" if readonly else self.path
            self.db = sqlite3.connect(uri, uri=readonly, isolation_level=None, timeout=10.0)
            self.db.row_factory = sqlite3.Row
            self.db.execute("PRAGMA foreign_keys = ON")
            if not readonly:
                self.db.execute("PRAGMA journal_mode = WAL")
                self.db.execute("PRAGMA synchronous = FULL")
            self._migrate(readonly)
        except sqlite3.Error as e:
            raise StoreError(f"{self.path}: cannot open the database: {e}") from None
        except OSError as e:
            raise StoreError(f"{self.path}: cannot create its folder: {e.strerror}") from None

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
        try:
            self.db.execute("BEGIN IMMEDIATE")
        except sqlite3.Error as e:
            raise StoreError(f"{self.path}: cannot write: {e}") from None
        try:
            yield self.db
        except BaseException:
            self.db.execute("ROLLBACK")
            raise
        else:
            try:
                self.db.execute("COMMIT")
            except sqlite3.Error as e:
                self.db.execute("ROLLBACK")
                raise StoreError(f"{self.path}: cannot write: {e}") from None

    def close(self) -> None:
        self.db.close()

    def _write(self, sql: str, args: Sequence[Any] = ()) -> sqlite3.Cursor:
        try:
            return self.db.execute(sql, args)
        except sqlite3.IntegrityError:
            raise
        except sqlite3.Error as e:
            raise StoreError(f"{self.path}: cannot write: {e}") from None

    # -- calls ----------------------------------------------------------------------

    def record_call(self, call: Call, *, now: float | None = None) -> bool:
        """Store a finished call; False when it was already there (replayed or resynced)."""
        cur = self._write(
            """INSERT OR IGNORE INTO calls (id, pbx, direction, outcome, missed, caller, caller_raw,
               caller_name, did, started, answered_at, ended, ring_seconds, voicemail_left, voicemail_box,
               answered_by, queue, channel, recorded_at) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)""",
            (
                call_key(call),
                call.pbx,
                str(call.direction),
                str(call.outcome),
                int(call.missed),
                call.caller,
                call.caller_raw,
                call.caller_name,
                call.did,
                call.started.timestamp(),
                _ts(call.answered_at),
                call.ended.timestamp(),
                call.ring_seconds,
                int(call.voicemail_left),
                call.voicemail_box,
                call.answered_by,
                call.queue,
                call.channel,
                time.time() if now is None else now,
            ),
        )
        return cur.rowcount == 1

    def get_call(self, key: str) -> sqlite3.Row | None:
        return self.db.execute("SELECT * FROM calls WHERE id = ?", (key,)).fetchone()

    def calls(self, *, limit: int = 50, since: float | None = None, number: str | None = None) -> list[sqlite3.Row]:
        q, args = "SELECT * FROM calls WHERE 1=1", []
        if since is not None:
            q += " AND ended >= ?"
            args.append(since)
        if number:
            q += " AND (caller = ? OR did = ?)"
            args += [number, number]
        q += " ORDER BY ended DESC LIMIT ?"
        args.append(limit)
        return self.db.execute(q, args).fetchall()

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
                return mid
        except sqlite3.IntegrityError:
            return None

    def message(self, mid: int) -> MessageRow:
        r = self.db.execute("SELECT * FROM messages WHERE id = ?", (mid,)).fetchone()
        if r is None:
            raise StoreError(f"no message {mid}")
        return MessageRow.from_row(r)

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
        return [MessageRow.from_row(r) for r in self.db.execute(q, args)]

    def message_events(self, mid: int) -> list[sqlite3.Row]:
        return self.db.execute(
            "SELECT at, state, detail FROM message_events WHERE message_id = ? ORDER BY id", (mid,)
        ).fetchall()

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
        return True

    def due_messages(self, now: float, *, limit: int = 100) -> list[MessageRow]:
        rows = self.db.execute(
            "SELECT * FROM messages WHERE state = 'scheduled' AND send_at <= ? ORDER BY send_at, id LIMIT ?",
            (now, limit),
        ).fetchall()
        return [MessageRow.from_row(r) for r in rows]

    def next_due_at(self) -> float | None:
        return self.db.execute("SELECT MIN(send_at) FROM messages WHERE state = 'scheduled'").fetchone()[0]

    def recover_interrupted(self, now: float) -> list[MessageRow]:
        """After a crash: texts left in ``sending`` may or may not have gone out.

        They become ``unknown`` (never re-sent blindly) and are returned so the
        daemon can report them to staff.
        """
        rows = [MessageRow.from_row(r) for r in self.db.execute("SELECT * FROM messages WHERE state = 'sending'")]
        for m in rows:
            self.transition(
                m.id, MessageState.UNKNOWN, now=now, detail="interrupted_while_sending", expect=MessageState.SENDING
            )
        return rows

    def message_by_ref(self, sender: str, ref: str) -> MessageRow | None:
        """The most recent message a sender acknowledged with ``ref`` (TP-MRs wrap at 256)."""
        r = self.db.execute(
            """SELECT m.* FROM message_refs r JOIN messages m ON m.id = r.message_id
               WHERE r.sender = ? AND r.ref = ? ORDER BY r.at DESC LIMIT 1""",
            (sender, ref),
        ).fetchone()
        return MessageRow.from_row(r) if r else None

    def outbox_depth(self) -> int:
        return self.db.execute("SELECT COUNT(*) FROM messages WHERE state IN ('scheduled','sending')").fetchone()[0]

    def oldest_due(self, now: float) -> float | None:
        return self.db.execute(
            "SELECT MIN(send_at) FROM messages WHERE state = 'scheduled' AND send_at <= ?", (now,)
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
            cur = self._write(
                """INSERT INTO incoming (sender, from_number, to_number, text, received_at, provider_id,
                   call_id, keyword) VALUES (?,?,?,?,?,?,?,?)""",
                (sender, from_number, to_number, text, received_at, provider_id, call_id, keyword),
            )
        except sqlite3.IntegrityError:
            return None
        return int(cur.lastrowid)

    def incoming(self, *, number: str | None = None, limit: int = 50) -> list[sqlite3.Row]:
        if number:
            return self.db.execute(
                "SELECT * FROM incoming WHERE from_number = ? ORDER BY received_at DESC LIMIT ?", (number, limit)
            ).fetchall()
        return self.db.execute("SELECT * FROM incoming ORDER BY received_at DESC LIMIT ?", (limit,)).fetchall()

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

    def is_opted_out(self, number: str) -> bool:
        r = self.db.execute("SELECT active FROM opt_outs WHERE number = ?", (number,)).fetchone()
        return bool(r and r[0])

    # -- e-mail queue -----------------------------------------------------------------

    def queue_email(
        self, *, kind: str, to: Sequence[str], subject: str, body: str, now: float, headers: dict | None = None
    ) -> int:
        cur = self._write(
            """INSERT INTO emails (kind, to_addrs, subject, body, headers, state, created, next_try)
               VALUES (?,?,?,?,?,'queued',?,?)""",
            (kind, json.dumps(list(to)), subject, body, json.dumps(headers or {}), now, now),
        )
        return int(cur.lastrowid)

    def due_emails(self, now: float, limit: int = 20) -> list[sqlite3.Row]:
        return self.db.execute(
            "SELECT * FROM emails WHERE state = 'queued' AND next_try <= ? ORDER BY id LIMIT ?", (now, limit)
        ).fetchall()

    def email_done(self, eid: int, *, now: float, ok: bool, error: str = "", retry_at: float | None = None) -> None:
        if ok:
            self._write("UPDATE emails SET state='sent', sent_at=?, attempts=attempts+1 WHERE id=?", (now, eid))
        elif retry_at is not None:
            self._write(
                "UPDATE emails SET attempts=attempts+1, next_try=?, last_error=? WHERE id=?", (retry_at, error, eid)
            )
        else:
            self._write("UPDATE emails SET state='failed', attempts=attempts+1, last_error=? WHERE id=?", (error, eid))

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


def _split_sql(script: str) -> list[str]:
    out, buf = [], []
    for line in script.splitlines():
        code = line.split("--", 1)[0]
        buf.append(code)
        if code.rstrip().endswith(";"):
            stmt = "\n".join(buf).strip()
            if stmt.rstrip(";").strip():
                out.append(stmt)
            buf = []
    rest = "\n".join(buf).strip()
    if rest:
        out.append(rest)
    return out
