"""The JSON API: an aiohttp sub-application for ``/api/v1/``.

``make_app(store, config, wake_outbox)`` builds it; the daemon mounts it on its HTTP listener
(``app.add_subapp("/api/v1", api)``), and the front desk can mount the same factory on its own
app. It owns HTTP and nothing else: reads go through ``store/api.py`` and ``store/figures.py``,
writes through ``staff/actions.py`` (the same functions as ``textbackd reply`` and the web
pages), so every rule applies and every write is an audit row with ``actor = "api:<token name>"``.

==================================================  =======  ==========================================
route                                               scope    what
==================================================  =======  ==========================================
``GET  calls``                                      read     calls, newest first (filters below)
``GET  conversations``                              read     numbers with activity, latest first
``GET  conversations/{number}``                     read     its state and texts both ways, newest first
``POST conversations/{number}/messages``            write    a staff text through the outbox
                                                             (``Idempotency-Key`` honoured for 24 h)
``POST conversations/{number}/handled``             write    mark the conversation handled
``GET  stats``                                      read     the figures of ``textbackd stats``
``GET  openapi.json``                               none     the OpenAPI 3.1 document
==================================================  =======  ==========================================

Clients send ``Authorization: Bearer <token>`` (``textbackd token add NAME --scope read|write``;
the store keeps only its SHA-256). Errors are RFC 9457 problem details
(``application/problem+json``: ``type``, ``title``, ``status``, ``detail``). Every list is a
keyset page: ``limit`` (1-200, default 50) and ``cursor`` (the ``next_cursor`` of the page before;
``null`` on the last page).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

import structlog
from aiohttp import web

from textbackd.core import numbers
from textbackd.core.errors import TextbackError
from textbackd.core.model import IncomingRecord, MessageRow, Outcome, TokenScope
from textbackd.core.settings import Config, parse_duration
from textbackd.staff import actions
from textbackd.store import api as api_q
from textbackd.store import conversations as conv_q
from textbackd.store import figures
from textbackd.store.db import Store

log = structlog.get_logger(__name__)

PREFIX = "/api/v1"
MAX_LIMIT = 200
IDEMPOTENCY_HOURS = 24
TOUCH_EVERY = 60.0  # seconds between two last_used writes for one token


@dataclass
class ApiState:
    """What the API needs of the daemon; ``config`` is replaced on a reload."""

    store: Store
    config: Config
    wake_outbox: Callable[[], None]
    clock: Callable[[], float] = time.time


STATE = web.AppKey("textbackd_api", ApiState)
# the authenticated token's name on the request (aiohttp ≥ 3.12 wants a typed key)
TOKEN: Any = web.RequestKey("textbackd_api_token", str) if hasattr(web, "RequestKey") else "textbackd_api_token"


class Problem(Exception):
    """An RFC 9457 problem: ``status``, a short ``title`` and a plain ``detail``."""

    def __init__(self, status: int, detail: str, title: str = "", headers: dict[str, str] | None = None) -> None:
        super().__init__(detail)
        self.status, self.detail, self.headers = status, detail, headers or {}
        self.title = title or {400: "Bad request", 401: "Unauthorized", 403: "Forbidden", 404: "Not found",
                               405: "Method not allowed", 413: "Request too large", 422: "Unprocessable request",
                               500: "Internal error"}.get(status, "Error")


def problem_response(status: int, title: str, detail: str, headers: dict[str, str] | None = None) -> web.Response:
    body = {"type": "about:blank", "title": title, "status": status, "detail": detail}
    return web.Response(status=status, text=json.dumps(body), content_type="application/problem+json",
                        headers=headers)


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def new_token() -> str:
    import secrets

    return "tbk_" + secrets.token_urlsafe(32)


# -- cursors and parameters --------------------------------------------------------------


def _cursor(values: list[Any]) -> str:
    return base64.urlsafe_b64encode(json.dumps(values, separators=(",", ":")).encode()).decode().rstrip("=")


def _uncursor(request: web.Request, shape: tuple[type, ...]) -> tuple | None:
    raw = request.query.get("cursor")
    if not raw:
        return None
    try:
        values = json.loads(base64.urlsafe_b64decode(raw + "=" * (-len(raw) % 4)))
        if len(values) != len(shape) or not all(isinstance(v, t) for v, t in zip(values, shape)):
            raise ValueError
    except (ValueError, binascii.Error, TypeError):
        raise Problem(400, "cursor: not a cursor this API gave (use next_cursor of the previous page)") from None
    return tuple(values)


def _limit(request: web.Request) -> int:
    raw = request.query.get("limit", "50")
    if not raw.isdigit() or not 1 <= int(raw) <= MAX_LIMIT:
        raise Problem(400, f"limit: give a whole number from 1 to {MAX_LIMIT}, not {raw!r}")
    return int(raw)


def _time(request: web.Request, key: str, now: float) -> float | None:
    raw = request.query.get(key)
    if not raw:
        return None
    d = parse_duration(raw)
    if d is not None:
        return now - d
    try:
        dt = datetime.fromisoformat(raw.replace("Z", "+00:00"))
    except ValueError:
        raise Problem(400, f"{key}: give an ISO 8601 time (2026-11-23T09:00:00Z) or a span back from now (7d, 24h)") from None
    return (dt if dt.tzinfo else dt.replace(tzinfo=timezone.utc)).timestamp()


def _bool(request: web.Request, key: str) -> bool | None:
    raw = request.query.get(key)
    if raw is None:
        return None
    if raw.lower() in ("true", "1", "yes"):
        return True
    if raw.lower() in ("false", "0", "no"):
        return False
    raise Problem(400, f"{key}: true or false, not {raw!r}")


def _number(request: web.Request, state: ApiState) -> str:
    raw = request.match_info["number"]
    n = numbers.normalize(raw, state.config.business.default_region)
    if not n.startswith("+"):
        raise Problem(404, f"{raw!r} is not a phone number textbackd can know")
    return n


def _page(items: list[Any], next_values: list[Any] | None) -> dict[str, Any]:
    return {"items": items, "next_cursor": _cursor(next_values) if next_values is not None else None}


# -- middlewares -------------------------------------------------------------------------


@web.middleware
async def _problems(request: web.Request, handler: Callable) -> web.StreamResponse:
    try:
        return await handler(request)
    except Problem as p:
        return problem_response(p.status, p.title, p.detail, p.headers)
    except web.HTTPRequestEntityTooLarge:
        return problem_response(413, "Request too large", "the body is too large for this API")
    except web.HTTPException as e:
        if e.status < 400:
            raise
        detail = {404: "no such resource in /api/v1 (see /api/v1/openapi.json)",
                  405: f"{request.method} is not allowed here"}.get(e.status, e.reason)
        return problem_response(e.status, e.reason, detail, {"Allow": e.headers["Allow"]} if "Allow" in e.headers else None)
    except Exception as e:  # noqa: BLE001 - the store is locked, a bug: a problem, never a traceback
        log.error("api_failed", path=request.path, error=type(e).__name__)
        return problem_response(500, "Internal error", "the request could not be completed; try again")


@web.middleware
async def _auth(request: web.Request, handler: Callable) -> web.StreamResponse:
    if request.path.endswith("/openapi.json"):
        return await handler(request)
    state = request.app[STATE]
    header = request.headers.get("Authorization", "")
    scheme, _, token = header.partition(" ")
    challenge = {"WWW-Authenticate": 'Bearer realm="textbackd"'}
    if scheme.lower() != "bearer" or not token.strip():
        raise Problem(401, "send Authorization: Bearer <token> (textbackd token add NAME --scope read|write)",
                      headers=challenge)
    found = api_q.token_by_hash(state.store, hash_token(token.strip()))
    if found is None:
        raise Problem(401, "this token is not known or was revoked", headers=challenge)
    if request.method not in ("GET", "HEAD") and found.scope is not TokenScope.WRITE:
        raise Problem(403, f"the token {found.name!r} may only read (its scope is {found.scope}); "
                           "writing needs a token with --scope write")
    now = state.clock()
    if found.last_used is None or now - found.last_used >= TOUCH_EVERY:
        api_q.touch_token(state.store, found.name, now=now)
    request[TOKEN] = found.name
    return await handler(request)


# -- handlers ------------------------------------------------------------------------------


def _text_item(at: float, row: MessageRow | IncomingRecord) -> dict[str, Any]:
    direction = "out" if isinstance(row, MessageRow) else "in"
    return {"direction": direction, **row.to_public()}


def _conversation(state: ApiState, number: str) -> dict[str, Any]:
    return {**conv_q.state(state.store, number).to_public(), "needs_person": actions.needs_person(state.store, number)}


async def list_calls(request: web.Request) -> web.Response:
    state = request.app[STATE]
    now = state.clock()
    limit = _limit(request)
    after = _uncursor(request, (float, str))
    outcome = request.query.get("outcome")
    if outcome and outcome not in {o.value for o in Outcome}:
        raise Problem(400, f"outcome: one of {', '.join(o.value for o in Outcome)}")
    number = request.query.get("number")
    rows = api_q.calls_page(
        state.store, limit=limit, after=after, since=_time(request, "since", now), until=_time(request, "until", now),
        missed=_bool(request, "missed"), outcome=outcome, line=request.query.get("line"),
        number=numbers.normalize(number, state.config.business.default_region) if number else None,
    )
    items = []
    for call, m in rows:
        text = None if m is None else {"id": m.id, "state": str(m.state), "reason": m.reason, "text": m.text}
        items.append({**call.to_public(), "textback": text})
    last = rows[-1][0] if len(rows) == limit else None
    return web.json_response(_page(items, [last.ended, last.id] if last else None))


async def list_conversations(request: web.Request) -> web.Response:
    state = request.app[STATE]
    limit = _limit(request)
    rows = api_q.conversations_page(state.store, limit=limit, after=_uncursor(request, (float, str)))
    items = [{"number": r.number, "name": r.name,
              "last_activity_at": datetime.fromtimestamp(r.last_activity_at, timezone.utc).isoformat(
                  timespec="milliseconds").replace("+00:00", "Z"),
              **_conversation(state, r.number)} for r in rows]
    last = rows[-1] if len(rows) == limit else None
    return web.json_response(_page(items, [last.last_activity_at, last.number] if last else None))


async def get_conversation(request: web.Request) -> web.Response:
    state = request.app[STATE]
    number = _number(request, state)
    if not api_q.known_number(state.store, number):
        raise Problem(404, f"no call, text or reply with {number}")
    limit = _limit(request)
    rows = api_q.thread_page(state.store, number, limit=limit, after=_uncursor(request, (float, str, int)))
    items = [_text_item(at, row) for at, row in rows]
    nxt = None
    if len(rows) == limit:
        at, row = rows[-1]
        nxt = [at, "out" if isinstance(row, MessageRow) else "in", row.id]
    calls = api_q.calls_page(state.store, limit=1, number=number)
    body = {**_conversation(state, number), "name": calls[0][0].caller_name if calls else "",
            "messages": _page(items, nxt)}
    return web.json_response(body)


async def _json_body(request: web.Request) -> tuple[bytes, dict[str, Any]]:
    raw = await request.read()
    try:
        body = json.loads(raw or b"{}")
    except ValueError:
        raise Problem(400, "the body is not JSON") from None
    if not isinstance(body, dict):
        raise Problem(400, "the body must be a JSON object")
    return raw, body


async def post_message(request: web.Request) -> web.Response:
    state = request.app[STATE]
    number = _number(request, state)
    raw, body = await _json_body(request)
    text = body.get("text")
    if not isinstance(text, str):
        raise Problem(422, 'give the text as {"text": "..."}')
    extra = sorted(set(body) - {"text"})
    if extra:
        raise Problem(422, f"unknown field {extra[0]!r} (only \"text\")")
    token = request[TOKEN]
    key = request.headers.get("Idempotency-Key", "").strip()
    if len(key) > 255:
        raise Problem(400, "Idempotency-Key: at most 255 characters")
    digest = hashlib.sha256(b"POST " + request.path.encode() + b"\n" + raw).hexdigest()
    now = state.clock()
    with state.store.tx():  # the check, the text, its audit row and the kept answer commit together
        api_q.forget_answers(state.store, now - IDEMPOTENCY_HOURS * 3600)
        if key:
            kept = api_q.answer_for(state.store, token, key)
            if kept is not None:
                if kept.request != digest:
                    raise Problem(422, "this Idempotency-Key was used for another request; use a new key")
                return web.json_response(kept.body, status=kept.status, headers={"Idempotent-Replayed": "true"})
        try:
            mid = actions.send_text(state.store, state.config, number, text, now=now, source="api",
                                    actor=f"api:{token}")
        except TextbackError as e:
            raise Problem(422, str(e)) from None
        answer = state.store.message(mid).to_public()
        if key:
            api_q.keep_answer(state.store, token=token, key=key, request=digest, status=201, body=answer, now=now)
    state.wake_outbox()
    return web.json_response(answer, status=201)


async def post_handled(request: web.Request) -> web.Response:
    state = request.app[STATE]
    number = _number(request, state)
    if not api_q.known_number(state.store, number):
        raise Problem(404, f"no call, text or reply with {number}")
    actions.mark_handled(state.store, number, actor=f"api:{request[TOKEN]}", now=state.clock())
    return web.json_response(_conversation(state, number))


async def get_stats(request: web.Request) -> web.Response:
    state = request.app[STATE]
    now = state.clock()
    since = _time(request, "since", now)
    until = _time(request, "until", now)
    report = figures.compute(state.store, state.config, since=now - 7 * 86400 if since is None else since,
                             until=now if until is None else until, line=request.query.get("line"))
    return web.json_response(report.to_json())


async def get_openapi(request: web.Request) -> web.Response:
    from textbackd.api.openapi import document

    return web.json_response(document())


def make_app(store: Store, config: Config, wake_outbox: Callable[[], None] = lambda: None, *,
             clock: Callable[[], float] = time.time) -> web.Application:
    """The ``/api/v1`` sub-application (mount it with ``app.add_subapp(PREFIX, make_app(...))``)."""
    app = web.Application(middlewares=[_problems, _auth], client_max_size=64 * 1024)
    app[STATE] = ApiState(store=store, config=config, wake_outbox=wake_outbox, clock=clock)
    r = app.router
    r.add_get("/calls", list_calls)
    r.add_get("/conversations", list_conversations)
    r.add_get("/conversations/{number}", get_conversation)
    r.add_post("/conversations/{number}/messages", post_message)
    r.add_post("/conversations/{number}/handled", post_handled)
    r.add_get("/stats", get_stats)
    r.add_get("/openapi.json", get_openapi)
    return app
