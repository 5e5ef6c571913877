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
    # 3 → 4 (issues 12, 14): what people do. Every staff action is an audit row (who, what, when, about which
    # number); a conversation (one per customer number) can be claimed and marked handled, and counts as
    # open again once a reply or a missed call comes after its handled mark.
    """
    CREATE TABLE audit (
        id         INTEGER PRIMARY KEY,
        at         REAL NOT NULL,
        actor      TEXT NOT NULL,              -- "web:maria", "cli:root", "mail:desk@office.example", "api:crm"
        action     TEXT NOT NULL,              -- core.model.AuditAction
        number     TEXT,                       -- the conversation it is about, if any
        message_id INTEGER,
        detail     TEXT NOT NULL DEFAULT ''
    );
    CREATE INDEX audit_at ON audit(at);
    CREATE INDEX audit_number ON audit(number, at);

    CREATE TABLE conversations (
        number     TEXT PRIMARY KEY,
        claimed_by TEXT,
        claimed_at REAL,
        handled_by TEXT,
        handled_at REAL
    );
    """,
    # 4 → 5 (issue 12, the front desk): accounts, sessions and login attempts; indexes so each page is a
    # range read with 100,000 calls; and what the Inbox needs per conversation (unread replies, waiting
    # since), kept by triggers in the same transaction as the reply, the staff text or the handled mark,
    # whichever program writes it (daemon, `textbackd reply`, mail, web, API). A trigger's inner
    # statements end on the line of its END: the migration splitter cuts at a line ending in ";".
    """
    CREATE TABLE users (
        id            INTEGER PRIMARY KEY,
        name          TEXT NOT NULL UNIQUE COLLATE NOCASE,
        role          TEXT NOT NULL,            -- core.model.Role
        password_hash TEXT NOT NULL,            -- argon2id
        disabled      INTEGER NOT NULL DEFAULT 0,
        created_at    REAL NOT NULL,
        changed_at    REAL NOT NULL,
        failed_count  INTEGER NOT NULL DEFAULT 0,  -- wrong passwords in a row
        locked_until  REAL,
        last_login_at REAL
    );
    CREATE TABLE web_sessions (
        id         TEXT PRIMARY KEY,            -- SHA-256 of the cookie value (a stolen file holds no cookie)
        user_id    INTEGER NOT NULL REFERENCES users(id) ON DELETE CASCADE,
        csrf       TEXT NOT NULL,
        created_at REAL NOT NULL,
        last_seen  REAL NOT NULL,
        address    TEXT NOT NULL DEFAULT ''
    );
    CREATE INDEX web_sessions_user ON web_sessions(user_id);
    CREATE TABLE login_attempts (
        id       INTEGER PRIMARY KEY,
        at       REAL NOT NULL,
        username TEXT NOT NULL,
        address  TEXT NOT NULL,
        ok       INTEGER NOT NULL
    );
    CREATE INDEX login_attempts_address ON login_attempts(address, at);
    CREATE INDEX login_attempts_user ON login_attempts(username, at);

    CREATE INDEX calls_missed_ended ON calls(missed, ended, id);
    CREATE INDEX calls_did_missed_ended ON calls(did, missed, ended, id);
    CREATE INDEX messages_staff_to ON messages(to_number, created) WHERE kind = 'staff';

    ALTER TABLE conversations ADD COLUMN unread INTEGER NOT NULL DEFAULT 0;
    ALTER TABLE conversations ADD COLUMN waiting_since REAL;
    ALTER TABLE conversations ADD COLUMN last_in_at REAL;
    CREATE INDEX conversations_waiting ON conversations(claimed_by IS NOT NULL, waiting_since, number)
        WHERE waiting_since IS NOT NULL;

    CREATE TRIGGER conversations_reply AFTER INSERT ON incoming WHEN NEW.keyword <> 'stop'
    BEGIN
        INSERT INTO conversations (number, unread, waiting_since, last_in_at)
        VALUES (NEW.from_number, 1, NEW.received_at, NEW.received_at)
        ON CONFLICT(number) DO UPDATE SET unread = unread + 1,
            waiting_since = COALESCE(waiting_since, excluded.waiting_since),
            last_in_at = MAX(COALESCE(last_in_at, 0), excluded.last_in_at); END;
    CREATE TRIGGER conversations_answered AFTER INSERT ON messages WHEN NEW.kind = 'staff'
    BEGIN
        UPDATE conversations SET unread = 0, waiting_since = NULL WHERE number = NEW.to_number; END;
    CREATE TRIGGER conversations_handled AFTER UPDATE OF handled_at ON conversations
        WHEN NEW.handled_at IS NOT NULL AND NEW.waiting_since IS NOT NULL
    BEGIN
        UPDATE conversations SET unread = 0, waiting_since = NULL WHERE number = NEW.number; END;

    INSERT INTO conversations (number) SELECT DISTINCT from_number FROM incoming WHERE keyword <> 'stop'
        ON CONFLICT(number) DO NOTHING;
    UPDATE conversations SET
        last_in_at = (SELECT MAX(received_at) FROM incoming WHERE from_number = number AND keyword <> 'stop'),
        unread = (SELECT COUNT(*) FROM incoming i WHERE i.from_number = number AND i.keyword <> 'stop'
                  AND i.received_at > COALESCE(handled_at, 0)
                  AND i.received_at > COALESCE((SELECT MAX(created) FROM messages m
                                                WHERE m.to_number = number AND m.kind = 'staff'), 0));
    UPDATE conversations SET waiting_since = (SELECT MIN(received_at) FROM incoming i WHERE i.from_number = number
        AND i.keyword <> 'stop' AND i.received_at > COALESCE(handled_at, 0)
        AND i.received_at > COALESCE((SELECT MAX(created) FROM messages m WHERE m.to_number = number
                                      AND m.kind = 'staff'), 0))
        WHERE unread > 0;
    """,
    # 5 → 6 (issue 14): contacts, webhooks out, the JSON API.
    # - calls.carrier_name: the caller ID name as the PBX gave it, kept beside caller_name (which a contact's
    #   name replaces); NULL on calls stored before this version (caller_name was the carrier's then).
    # - events: one row per call.missed, text.sent, reply.received ..., written in the same transaction as the
    #   change it describes (store/events.py), and one webhook_deliveries row per endpoint that wants it, so a
    #   crash can neither lose an event nor invent one. uid is the webhook-id on every retry.
    # - webhook_endpoints: the [[webhooks]] of the config (synced at start) and whether 410 Gone disabled one.
    # - api_tokens (the SHA-256 of each token, never the token) and api_idempotency (Idempotency-Key answers).
    """
    ALTER TABLE calls ADD COLUMN carrier_name TEXT;

    CREATE TABLE events (
        id    INTEGER PRIMARY KEY,
        uid   TEXT NOT NULL UNIQUE,         -- "msg_<hex>": the webhook-id
        type  TEXT NOT NULL,                -- core.model.EventType
        at    REAL NOT NULL,
        data  TEXT NOT NULL                 -- JSON: the call, text, reply... as the API shows it
    );
    CREATE INDEX events_at ON events(at);

    CREATE TABLE webhook_endpoints (
        name            TEXT PRIMARY KEY,   -- [[webhooks]] name
        events          TEXT NOT NULL,      -- JSON list of the event types it receives
        active          INTEGER NOT NULL DEFAULT 1,  -- 0: no longer in the config
        disabled_at     REAL,               -- 410 Gone (until `textbackd webhooks enable NAME`)
        disabled_reason TEXT NOT NULL DEFAULT ''
    );

    CREATE TABLE webhook_deliveries (
        id           INTEGER PRIMARY KEY,
        endpoint     TEXT NOT NULL,
        event_id     INTEGER NOT NULL REFERENCES events(id) ON DELETE CASCADE,
        state        TEXT NOT NULL,         -- pending | delivered | failed
        attempts     INTEGER NOT NULL DEFAULT 0,
        created      REAL NOT NULL,
        next_try     REAL NOT NULL,
        delivered_at REAL,
        last_status  INTEGER,
        last_error   TEXT NOT NULL DEFAULT ''
    );
    CREATE UNIQUE INDEX webhook_deliveries_one ON webhook_deliveries(endpoint, event_id);
    CREATE INDEX webhook_deliveries_queue ON webhook_deliveries(endpoint, state, event_id);
    CREATE INDEX webhook_deliveries_event ON webhook_deliveries(event_id);

    CREATE TABLE api_tokens (
        name       TEXT PRIMARY KEY,
        scope      TEXT NOT NULL,           -- read | write
        hash       TEXT NOT NULL UNIQUE,    -- sha256 hex of the token
        created    REAL NOT NULL,
        created_by TEXT NOT NULL,
        last_used  REAL,
        revoked_at REAL
    );

    CREATE TABLE api_idempotency (
        token    TEXT NOT NULL,             -- the token's name
        key      TEXT NOT NULL,             -- the Idempotency-Key header
        request  TEXT NOT NULL,             -- sha256 of method, path and body: a key reused for another request is refused
        status   INTEGER NOT NULL,
        response TEXT NOT NULL,             -- the JSON answered the first time
        created  REAL NOT NULL,
        PRIMARY KEY (token, key)
    );
    CREATE INDEX api_idempotency_created ON api_idempotency(created);
    """,
    # 6 → 7 (issue 18 crash safety, issue 13.1 multipart resume): each part of a text as its sender
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
    # 7 → 8 (issue 15): each per-call history read is a range of an index, whatever the store holds.
    # The policy's windows count text-backs that are not skipped or cancelled (NOT_COUNTED_STATES): these
    # partial indexes hold only those, so a window scans the texts it counts (bounded by the caps), never the
    # skips (a busy replay is mostly skips). The prefix cap reads the prefix as an expression (all but the
    # last 4 digits, policy.number_prefix). messages_open_to: a number's pending text-back (only open texts are in it); the last text-back
    # and the last answered call are the top of an expression index (MAX reads one entry).
    # store/history.py writes the same WHERE literally, or SQLite would not use them (bench/README.md).
    """
    CREATE INDEX messages_counted_to ON messages(to_number, created)
        WHERE kind = 'textback' AND state NOT IN ('skipped', 'cancelled');
    CREATE INDEX messages_counted_prefix ON messages(substr(to_number, 1, length(to_number) - 4), created)
        WHERE kind = 'textback' AND state NOT IN ('skipped', 'cancelled');
    CREATE INDEX messages_counted_created ON messages(created)
        WHERE kind = 'textback' AND state NOT IN ('skipped', 'cancelled');
    CREATE INDEX messages_open_to ON messages(to_number) WHERE kind = 'textback' AND state IN ('scheduled', 'sending');
    CREATE INDEX messages_last_textback ON messages(to_number, COALESCE(sent_at, send_at))
        WHERE kind = 'textback' AND state IN ('sent', 'delivered', 'unknown');
    CREATE INDEX calls_answered_in ON calls(caller, COALESCE(answered_at, ended))
        WHERE outcome = 'answered' AND direction = 'inbound';
    CREATE INDEX calls_answered_out ON calls(did, COALESCE(answered_at, ended))
        WHERE outcome = 'answered' AND direction = 'outbound';
    -- a new text's foreign-key check (and retention's cascade) looked through every reference ever taken
    CREATE INDEX message_refs_message ON message_refs(message_id);
    -- events.record asks which endpoints want each new call and text: a search, not a scan, even for a few rows
    CREATE INDEX webhook_endpoints_live ON webhook_endpoints(active, disabled_at);
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
