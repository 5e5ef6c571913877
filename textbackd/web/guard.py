"""What every front-desk request passes: the guard (sessions, CSRF, roles, security headers), the
request context and the page renderer. ``app.py`` builds the application around it; each request
passes ``_guard`` (below), then a handler in ``views.py`` that reads through ``store/pages.py`` and
acts through ``staff/``.

The rules ``_guard`` keeps, on every route but ``/healthz`` and ``/login``:

* a live session (``staff/accounts.session_for``) or a redirect to ``/login`` (401 for the event
  stream and fragments): no page, fragment or asset is served without one;
* on every POST, the session's CSRF token in the form (``csrf``) or the ``X-CSRF-Token`` header,
  and an ``Origin`` (when the browser sends one) naming this host: else 403;
* the route's role (``Role.may``): else 403;
* security headers on every answer: a strict Content-Security-Policy (scripts and styles only from
  ``/static/``), no framing, no referrer, ``no-store`` on pages.

Sub-applications mounted with ``subapps`` (the issue-14 API at ``/api/v1/``) bring their own
authentication: ``_guard`` leaves their requests to them and only adds the headers.
"""

from __future__ import annotations

import hmac
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

import jinja2
import structlog
from aiohttp import web

from textbackd import __version__
from textbackd.core.model import Role, WebSession
from textbackd.core.settings import Config, WebConfig
from textbackd.staff import accounts
from textbackd.store.db import Store
from textbackd.web.live import Hub

log = structlog.get_logger(__name__)

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


class Host(Protocol):
    """What the web app needs of the running daemon (``daemon/service.py`` gives one)."""

    def health(self) -> dict[str, Any]:
        """The facts of ``/healthz`` (``daemon.metrics.health``)."""

    def pbx_facts(self) -> dict[str, Any]:
        """kind, address, connected, up_since, last_event_at, reconnects_today."""

    def sender_facts(self) -> list[dict[str, Any]]:
        """One dict per sender: name, kind, healthy, and its ``status()``."""

    def wake_outbox(self) -> None:
        """A text was queued: look at the outbox now rather than at its next tick."""


class NoDaemon:
    """For a web app without a daemon around it (tests, tools): nothing known, nothing to wake."""

    def health(self) -> dict[str, Any]:
        return {}

    def pbx_facts(self) -> dict[str, Any]:
        return {}

    def sender_facts(self) -> list[dict[str, Any]]:
        return []

    def wake_outbox(self) -> None:
        return None


@dataclass
class Ctx:
    store: Store
    config: Config
    host: Host
    hub: Hub
    clock: Callable[[], float]
    env: jinja2.Environment
    tls: bool
    subapp_prefixes: tuple[str, ...] = ()
    started_at: float = field(default_factory=time.time)
    cache: dict[Any, Any] = field(default_factory=dict)  # views' short-lived results (the figures of a period)

    @property
    def web(self) -> WebConfig:
        return self.config.web or WebConfig()


CTX = web.AppKey("textbackd_ctx", Ctx)
SESSION = web.RequestKey("textbackd_session", WebSession)
COOKIE = "tb_session"
LOGIN_COOKIE = "tb_login"
PUBLIC = ("/healthz", "/login")
CSP = ("default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; "
       "form-action 'self'; frame-ancestors 'none'; base-uri 'none'")


def cookie_name(tls: bool) -> str:
    """``__Host-`` makes the browser refuse the cookie unless it is Secure, for this host, path /."""
    return f"__Host-{COOKIE}" if tls else COOKIE


def secure_request(request: web.Request, ctx: Ctx) -> bool:
    """Served over TLS: by us, or by a TLS proxy on this machine that says so."""
    if ctx.tls:
        return True
    peer = request.remote or ""
    return peer in ("127.0.0.1", "::1") and request.headers.get("X-Forwarded-Proto", "") == "https"


def client_address(request: web.Request) -> str:
    """The browser's address: the peer, or what a proxy on this machine says it forwarded for."""
    peer = request.remote or ""
    fwd = request.headers.get("X-Forwarded-For", "")
    if fwd and peer in ("127.0.0.1", "::1"):
        return fwd.split(",")[-1].strip()[:64] or peer
    return peer


def session_of(request: web.Request) -> WebSession:
    return request[SESSION]


def needs(role: Role) -> Callable[[Handler], Handler]:
    """A handler only ``role`` (and the roles above it) may use; others get 403."""

    def wrap(handler: Handler) -> Handler:
        async def guarded(request: web.Request, **kw: Any) -> web.StreamResponse:
            s = request.get(SESSION)
            if s is None or not s.user.role.may(role):
                return render(request, "error.html", status=403, title="Not for your account",
                              message=f"This page is for the {role} role and above. Your account is "
                              f"{s.user.role if s else 'not signed in'}.")
            return await handler(request, **kw)

        guarded.__name__ = handler.__name__
        return guarded

    return wrap


def render(request: web.Request, template: str, *, status: int = 200, **values: Any) -> web.Response:
    ctx = request.app[CTX]
    s = request.get(SESSION)
    page = {
        "user": s.user.name if s else "",
        "role": str(s.user.role) if s else "",
        "csrf": s.csrf if s else "",
        "may_figures": bool(s and s.user.role.may(Role.OWNER)),
        "may_status": bool(s and s.user.role.may(Role.ADMIN)),
        "business": ctx.config.business.name,
        "path": request.path,
        "version": __version__,
    }
    html = ctx.env.get_template(template).render(page=page, **values)
    return web.Response(text=html, status=status, content_type="text/html", charset="utf-8")


@web.middleware
async def _guard(request: web.Request, handler: Handler) -> web.StreamResponse:
    ctx = request.app[CTX]
    if any(request.path.startswith(p) for p in ctx.subapp_prefixes):
        return _headers(await handler(request), page=False)
    if request.path in PUBLIC:
        return _headers(await handler(request))
    cookie = request.cookies.get(cookie_name(ctx.tls))
    s = accounts.session_for(ctx.store, ctx.web, cookie, now=ctx.clock())
    if s is None:
        if request.method == "GET" and request.path != "/events" and not request.path.startswith(("/static/", "/compose/")):
            nxt = request.path_qs if request.path != "/" else ""
            raise web.HTTPSeeOther("/login" + (f"?next={_q(nxt)}" if nxt else ""))
        status = 403 if request.method == "POST" else 401
        return _headers(web.Response(status=status, text="sign in first\n"))
    request[SESSION] = s
    if request.method not in ("GET", "HEAD", "OPTIONS"):
        origin = request.headers.get("Origin")
        if origin and origin != "null" and origin.split("://", 1)[-1] != request.host:
            return _headers(forbidden(request, "This form came from another site."))
        token = request.headers.get("X-CSRF-Token", "")
        if not token:
            form = await request.post()
            token = str(form.get("csrf", ""))
        if not token or not hmac.compare_digest(token, s.csrf):
            return _headers(forbidden(request, "This form is out of date or came from another site (no valid CSRF token). "
                                      "Go back, reload the page and try again."))
    return _headers(await handler(request), static=request.path.startswith("/static/"))


def forbidden(request: web.Request, message: str) -> web.Response:
    return render(request, "error.html", status=403, title="Refused", message=message)


def _q(s: str) -> str:
    from urllib.parse import quote

    return quote(s, safe="")


def _headers(resp: web.StreamResponse, *, page: bool = True, static: bool = False) -> web.StreamResponse:
    h = resp.headers
    h.setdefault("X-Content-Type-Options", "nosniff")
    h.setdefault("Referrer-Policy", "no-referrer")
    h.setdefault("X-Frame-Options", "DENY")
    if page:
        h.setdefault("Content-Security-Policy", CSP)
        h.setdefault("Cache-Control", "private, max-age=3600" if static else "no-store")
    return resp
