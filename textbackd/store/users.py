"""What the front desk's accounts and sessions ask of the store: users, signed-in browsers and login
attempts (issue 12). Hashing and the rules (lockout, rate limits, idle expiry) live in
``staff/accounts.py``; here are only the rows."""

from __future__ import annotations

import sqlite3

from textbackd.core.errors import TextbackError
from textbackd.core.model import Role, User, WebSession
from textbackd.store.db import Store


def _user(r: sqlite3.Row, prefix: str = "") -> User:
    g = (lambda k: r[prefix + k])
    return User(id=g("id"), name=g("name"), role=Role(g("role")), disabled=bool(g("disabled")),
                created_at=g("created_at"), changed_at=g("changed_at"), failed_count=g("failed_count"),
                locked_until=g("locked_until"), last_login_at=g("last_login_at"), password_hash=g("password_hash"))


def add(store: Store, name: str, role: Role, password_hash: str, *, now: float) -> User:
    try:
        store.write(
            "INSERT INTO users (name, role, password_hash, created_at, changed_at) VALUES (?,?,?,?,?)",
            (name, str(role), password_hash, now, now),
        )
    except sqlite3.IntegrityError:
        raise TextbackError(f"a user named {name!r} already exists") from None
    u = get(store, name)
    assert u is not None
    return u


def get(store: Store, name: str) -> User | None:
    r = store.db.execute("SELECT * FROM users WHERE name = ?", (name,)).fetchone()
    return _user(r) if r else None


def all_users(store: Store) -> list[User]:
    return [_user(r) for r in store.db.execute("SELECT * FROM users ORDER BY name COLLATE NOCASE")]


def set_password(store: Store, user_id: int, password_hash: str, *, now: float) -> None:
    store.write("UPDATE users SET password_hash = ?, changed_at = ?, failed_count = 0, locked_until = NULL "
                "WHERE id = ?", (password_hash, now, user_id))


def set_disabled(store: Store, user_id: int, disabled: bool, *, now: float) -> None:
    store.write("UPDATE users SET disabled = ?, changed_at = ? WHERE id = ?", (int(disabled), now, user_id))


def set_role(store: Store, user_id: int, role: Role, *, now: float) -> None:
    store.write("UPDATE users SET role = ?, changed_at = ? WHERE id = ?", (str(role), now, user_id))


def login_failed(store: Store, user_id: int, *, lock_after: int, lock_until: float) -> User:
    """Count one more wrong password in a row; lock the account when that makes ``lock_after``."""
    store.write(
        "UPDATE users SET failed_count = failed_count + 1, "
        "locked_until = CASE WHEN failed_count + 1 >= ? THEN ? ELSE locked_until END WHERE id = ?",
        (lock_after, lock_until, user_id),
    )
    r = store.db.execute("SELECT * FROM users WHERE id = ?", (user_id,)).fetchone()
    return _user(r)


def login_ok(store: Store, user_id: int, *, now: float) -> None:
    store.write("UPDATE users SET failed_count = 0, locked_until = NULL, last_login_at = ? WHERE id = ?",
                (now, user_id))


def unlock(store: Store, user_id: int) -> None:
    store.write("UPDATE users SET failed_count = 0, locked_until = NULL WHERE id = ?", (user_id,))


# -- login attempts (the per-address rate limit) -----------------------------------------


def record_attempt(store: Store, *, at: float, username: str, address: str, ok: bool) -> None:
    store.write("INSERT INTO login_attempts (at, username, address, ok) VALUES (?,?,?,?)",
                (at, username[:100], address, int(ok)))


def failures_from(store: Store, address: str, since: float) -> int:
    return store.db.execute(
        "SELECT COUNT(*) FROM login_attempts WHERE address = ? AND at >= ? AND ok = 0", (address, since)
    ).fetchone()[0]


# -- sessions ---------------------------------------------------------------------------


def add_session(store: Store, *, sid: str, user_id: int, csrf: str, now: float, address: str) -> None:
    store.write("INSERT INTO web_sessions (id, user_id, csrf, created_at, last_seen, address) VALUES (?,?,?,?,?,?)",
                (sid, user_id, csrf, now, now, address))


def session(store: Store, sid: str) -> WebSession | None:
    r = store.db.execute(
        """SELECT s.id AS s_id, s.csrf AS s_csrf, s.created_at AS s_created_at, s.last_seen AS s_last_seen,
                  s.address AS s_address, u.* FROM web_sessions s JOIN users u ON u.id = s.user_id WHERE s.id = ?""",
        (sid,),
    ).fetchone()
    if r is None:
        return None
    return WebSession(id=r["s_id"], user=_user(r), csrf=r["s_csrf"], created_at=r["s_created_at"],
                      last_seen=r["s_last_seen"], address=r["s_address"])


def touch_session(store: Store, sid: str, now: float) -> None:
    store.write("UPDATE web_sessions SET last_seen = ? WHERE id = ?", (now, sid))


def end_session(store: Store, sid: str) -> bool:
    return store.write("DELETE FROM web_sessions WHERE id = ?", (sid,)).rowcount == 1


def end_sessions_of(store: Store, user_id: int) -> int:
    return store.write("DELETE FROM web_sessions WHERE user_id = ?", (user_id,)).rowcount


def end_stale_sessions(store: Store, *, idle_before: float, created_before: float) -> int:
    return store.write("DELETE FROM web_sessions WHERE last_seen < ? OR created_at < ?",
                       (idle_before, created_before)).rowcount


def session_count(store: Store) -> int:
    return store.db.execute("SELECT COUNT(*) FROM web_sessions").fetchone()[0]
