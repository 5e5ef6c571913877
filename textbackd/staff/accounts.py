"""Front-desk accounts and sign-in (issue 12): who may use the web pages, and the rules of a login.

* Passwords are hashed with argon2id (argon2-cffi's defaults: RFC 9106's second recommended set,
  64 MiB, 3 passes); only the hash is stored. A password is at least ``MIN_PASSWORD`` characters.
* A login is refused (HTTP 429) once ``address_failures`` wrong passwords came from the same address
  within ``address_window_minutes``, before the password is even checked; and an account locks for
  ``lockout_minutes`` when ``lockout_failures`` wrong passwords in a row were given for it (the
  right password is refused too while it is locked). An unknown name costs the same hashing time as a
  known one, and every refusal reads the same to the browser but for locks and rate limits.
* A session is a random 256-bit cookie; the store keeps only its SHA-256, with a CSRF token, the
  address and when it was last used. It ends after ``session_idle_minutes`` unused, after
  ``session_max_hours`` in all, when its user signs out, is disabled or gets a new password.
* Every sign-in, failed sign-in, sign-out and account change is an audit row (``web:<name>`` or
  ``cli:<login>``), written in the same transaction as what it records.
"""

from __future__ import annotations

import asyncio
import hashlib
import re
import secrets
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError

from textbackd.core.errors import TextbackError
from textbackd.core.model import AuditAction, Role, User, WebSession
from textbackd.core.settings import WebConfig
from textbackd.store import audit
from textbackd.store import users as users_q
from textbackd.store.db import Store

MIN_PASSWORD = 10
NAME_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.@-]{0,39}")
_hasher = PasswordHasher()
# One password check at a time, in a thread of its own: each argon2id check takes 64 MiB and a few
# tenths of a second by design, so twenty sign-ins at once neither block the event loop, nor take the
# default executor's threads (the modem opens its port there), nor add 20 x 64 MiB to the daemon.
_POOL = ThreadPoolExecutor(max_workers=1, thread_name_prefix="argon2")
_DUMMY: list[str] = []  # a hash to check unknown names against (made once, in the pool)
TOUCH_EVERY = 30.0  # seconds between last_seen writes for one session (each write is an fsync)


class LoginRefused(TextbackError):
    """A sign-in that did not succeed; ``status`` is the HTTP answer (401, 423 locked, 429 rate limit)."""

    def __init__(self, message: str, status: int = 401) -> None:
        super().__init__(message)
        self.status = status


@dataclass(frozen=True, slots=True)
class SignedIn:
    cookie: str  # the value for the browser; the store never sees it
    session: WebSession


def hash_password(password: str) -> str:
    if len(password) < MIN_PASSWORD:
        raise TextbackError(f"the password is too short: at least {MIN_PASSWORD} characters")
    return _hasher.hash(password)


def _check_name(name: str) -> str:
    if not NAME_RE.fullmatch(name):
        raise TextbackError(f"{name!r} is not a user name: letters, digits, '_', '.', '@', '-', at most 40")
    return name


def _role(role: str | Role) -> Role:
    try:
        return Role(role)
    except ValueError:
        raise TextbackError(f"{role!r} is not a role: frontdesk, owner or admin") from None


def _find(store: Store, name: str) -> User:
    u = users_q.get(store, name)
    if u is None:
        raise TextbackError(f"no user named {name!r} (textbackd user list)")
    return u


def add_user(store: Store, name: str, role: str | Role, password: str, *, actor: str, now: float) -> User:
    return _add(store, _check_name(name), _role(role), hash_password(password), actor=actor, now=now)


async def add_user_off_loop(store: Store, name: str, role: str | Role, password: str, *, actor: str,
                            now: float) -> User:
    """``add_user`` from the daemon's event loop (the Users page): the argon2id hash, about 0.3 s of CPU, is made
    in the password thread, so the PBX stream and the outbox do not wait for it. A bad name or role is refused
    before the hash is spent."""
    n, r = _check_name(name), _role(role)
    h = await asyncio.get_running_loop().run_in_executor(_POOL, hash_password, password)
    return _add(store, n, r, h, actor=actor, now=now)


def _add(store: Store, name: str, r: Role, h: str, *, actor: str, now: float) -> User:
    with store.tx():
        u = users_q.add(store, name, r, h, now=now)
        audit.record(store, at=now, actor=actor, action=AuditAction.USER_CHANGED, detail=f"added {u.name} ({r})")
    return u


def set_password(store: Store, name: str, password: str, *, actor: str, now: float) -> User:
    h = hash_password(password)
    with store.tx():
        u = _find(store, name)
        users_q.set_password(store, u.id, h, now=now)
        n = users_q.end_sessions_of(store, u.id)
        audit.record(store, at=now, actor=actor, action=AuditAction.USER_CHANGED,
                     detail=f"new password for {u.name}; {n} session(s) ended")
    return _find(store, name)


def set_disabled(store: Store, name: str, disabled: bool, *, actor: str, now: float) -> User:
    with store.tx():
        u = _find(store, name)
        users_q.set_disabled(store, u.id, disabled, now=now)
        n = users_q.end_sessions_of(store, u.id) if disabled else 0
        audit.record(store, at=now, actor=actor, action=AuditAction.USER_CHANGED,
                     detail=f"{'disabled' if disabled else 'enabled'} {u.name}" + (f"; {n} session(s) ended" if n else ""))
    return _find(store, name)


def unlock(store: Store, name: str, *, actor: str, now: float) -> User:
    with store.tx():
        u = _find(store, name)
        users_q.unlock(store, u.id)
        audit.record(store, at=now, actor=actor, action=AuditAction.USER_CHANGED, detail=f"unlocked {u.name}")
    return _find(store, name)


def list_users(store: Store) -> list[User]:
    return users_q.all_users(store)


# -- signing in and out -----------------------------------------------------------------


def _sid(cookie: str) -> str:
    return hashlib.sha256(cookie.encode()).hexdigest()


def _verify(password_hash: str | None, password: str) -> bool:
    if password_hash is None:  # an unknown name costs what a known one does
        if not _DUMMY:
            _DUMMY.append(_hasher.hash("not a password anyone has: equal time for unknown names"))
        password_hash = _DUMMY[0]
    try:
        return _hasher.verify(password_hash, password)
    except (VerifyMismatchError, VerificationError, InvalidHashError):
        return False


async def login(store: Store, cfg: WebConfig, name: str, password: str, *, address: str, now: float) -> SignedIn:
    """A new session for ``name``, or ``LoginRefused`` (each attempt audited; see the module docstring).

    The hash is checked in a worker thread (about 0.1-0.4 s of CPU by design): the daemon's event loop,
    which also reads the PBX and drives the outbox, never waits for it."""
    name = name.strip()[:40]
    actor = f"web:{name}"
    window = now - cfg.address_window_minutes * 60
    if users_q.failures_from(store, address, window) >= cfg.address_failures:
        with store.tx():
            users_q.record_attempt(store, at=now, username=name, address=address, ok=False)
            audit.record(store, at=now, actor=actor, action=AuditAction.LOGIN_FAILED,
                         detail=f"too many failed sign-ins from {address}")
        raise LoginRefused("Too many failed sign-ins from this computer. Wait a few minutes and try again.", 429)
    u = users_q.get(store, name) if NAME_RE.fullmatch(name) else None
    ok = await asyncio.get_running_loop().run_in_executor(_POOL, _verify, u.password_hash if u else None, password)
    ok = ok and u is not None
    with store.tx():
        users_q.record_attempt(store, at=now, username=name, address=address, ok=ok)
        if u is not None and u.locked_until is not None and u.locked_until > now:
            audit.record(store, at=now, actor=actor, action=AuditAction.LOGIN_FAILED, detail="account locked")
            locked = True
        else:
            locked = False
    if locked:
        raise LoginRefused("This account is locked after too many wrong passwords. Try again later or ask an admin.", 423)
    if not ok or u is None or u.disabled:
        detail = "unknown user" if u is None else ("account disabled" if u.disabled and ok else "wrong password")
        with store.tx():
            if u is not None and not ok:
                after = users_q.login_failed(store, u.id, lock_after=cfg.lockout_failures,
                                             lock_until=now + cfg.lockout_minutes * 60)
                if after.locked_until is not None and after.locked_until > now:
                    detail += f"; account locked for {cfg.lockout_minutes:g} min"
            audit.record(store, at=now, actor=actor, action=AuditAction.LOGIN_FAILED, detail=detail)
        if "locked" in detail:
            raise LoginRefused("This account is locked after too many wrong passwords. Try again later or ask an admin.", 423)
        raise LoginRefused("Wrong username or password.")
    rehashed = None  # argon2-cffi's parameters moved on since this hash was made: a new one, off the loop too
    if _hasher.check_needs_rehash(u.password_hash):
        rehashed = await asyncio.get_running_loop().run_in_executor(_POOL, _hasher.hash, password)
    cookie, csrf = secrets.token_urlsafe(32), secrets.token_urlsafe(32)
    with store.tx():
        users_q.end_stale_sessions(store, idle_before=now - cfg.session_idle_minutes * 60,
                                   created_before=now - cfg.session_max_hours * 3600)
        users_q.login_ok(store, u.id, now=now)
        users_q.add_session(store, sid=_sid(cookie), user_id=u.id, csrf=csrf, now=now, address=address)
        audit.record(store, at=now, actor=actor, action=AuditAction.LOGIN, detail=f"from {address}")
        if rehashed is not None:
            users_q.set_password(store, u.id, rehashed, now=now)
    s = users_q.session(store, _sid(cookie))
    assert s is not None
    return SignedIn(cookie=cookie, session=s)


def session_for(store: Store, cfg: WebConfig, cookie: str | None, *, now: float) -> WebSession | None:
    """The live session a cookie names, or None (unknown, idle too long, too old, its user disabled)."""
    if not cookie or len(cookie) > 200:
        return None
    sid = _sid(cookie)
    s = users_q.session(store, sid)
    if s is None:
        return None
    if (now - s.last_seen > cfg.session_idle_minutes * 60 or now - s.created_at > cfg.session_max_hours * 3600
            or s.user.disabled):
        users_q.end_session(store, sid)
        return None
    if now - s.last_seen >= TOUCH_EVERY:
        users_q.touch_session(store, sid, now)
    return s


def logout(store: Store, session: WebSession, *, now: float) -> None:
    with store.tx():
        users_q.end_session(store, session.id)
        audit.record(store, at=now, actor=f"web:{session.user.name}", action=AuditAction.LOGOUT)
