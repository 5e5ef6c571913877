"""The schema: migrations by ``PRAGMA user_version``, and the state machine of a text.

``MIGRATIONS[i]`` takes a database from version ``i`` to ``i + 1``; opening an older
file migrates it in one transaction, opening a newer one is refused (an older
textbackd must not write a schema it does not know).
"""

from __future__ import annotations

from textbackd.core.model import MessageState

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
    # 3 → 4 (issue 18 crash safety, issue 13.1 multipart resume): each part of a text as its sender
    # took it. A part is `handed_over` on disk before the point of no return, then `accepted` (TP-MR or
    # provider id) or `refused`; after a crash a text resumes with the same concatenation reference and
    # only a part handed over without an answer is in doubt (store/outbox.py)
    """
    CREATE TABLE message_parts (
        message_id   INTEGER NOT NULL REFERENCES messages(id) ON DELETE CASCADE,
        copy         INTEGER NOT NULL DEFAULT 0,  -- 0: the current copy, n: the copy n staff resends ago
        part         INTEGER NOT NULL,            -- 1-based
        total        INTEGER NOT NULL,
        sender       TEXT NOT NULL,
        concat_ref   INTEGER,                     -- UDH reference of a linked text (modem), else NULL
        state        TEXT NOT NULL,               -- handed_over | accepted | refused
        ref          TEXT,                        -- TP-MR or provider id, once accepted
        expected_ref TEXT,                        -- the ref it will most likely get (next TP-MR, our own id)
        tries        INTEGER NOT NULL DEFAULT 1,
        handed_at    REAL NOT NULL,
        answered_at  REAL,
        delivered_at REAL,
        detail       TEXT NOT NULL DEFAULT '',
        PRIMARY KEY (message_id, copy, part)
    );
    CREATE INDEX message_parts_doubt ON message_parts(sender, state);
    -- a text an older textbackd left in `sending` may have been handed over: it stays in doubt
    INSERT INTO message_parts (message_id, part, total, sender, state, handed_at, detail)
        SELECT id, 1, 1, sender, 'handed_over', updated, 'claimed by an older textbackd' FROM messages
        WHERE state = 'sending';
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
    # scheduled again: a staff resend, on purpose (staff/actions.resend)
    MessageState.UNKNOWN: frozenset(
        {MessageState.SENT, MessageState.DELIVERED, MessageState.FAILED, MessageState.SCHEDULED}
    ),
    MessageState.DELIVERED: frozenset(),
    # a late DLR can prove us wrong; a staff resend
    MessageState.FAILED: frozenset({MessageState.DELIVERED, MessageState.SCHEDULED}),
    MessageState.CANCELLED: frozenset(),
    MessageState.SKIPPED: frozenset(),
    MessageState.EXPIRED: frozenset(),
}


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
