"""The HTTP listener: each sender kind's webhooks (replies and delivery reports), ``/healthz`` and
``/metrics``.

The daemon always starts it and adds ``/healthz`` and ``/metrics`` (``daemon/metrics.py``) with
``add_get``. The webhook routes are not written here: every registered sender kind returns
its own (``SenderKind.routes``, in ``senders/<kind>/routes.py``), and they are mounted at start,
so a new gateway kind brings its routes with it. Today's routes:

==========================================  ===================================================
route                                       protection
==========================================  ===================================================
``GET|POST /kannel/{sender}/incoming/{s}``  ``{s}`` = ``http.secret`` (Kannel sms-service URL)
``GET|POST /kannel/{sender}/incoming``      header ``X-Textbackd-Secret: <http.secret>``
``GET /kannel/{sender}/dlr?ref&sig&type``   ``sig`` = per-message HMAC under ``http.secret``
``POST /twilio/{sender}/incoming``          ``X-Twilio-Signature`` (the sender's auth token)
``POST /twilio/{sender}/status``            ``X-Twilio-Signature`` (StatusCallback)
``GET|POST /http/{sender}/incoming[/{s}]``  path secret or ``X-Textbackd-Secret``
``GET|POST /http/{sender}/dlr[/{s}]``       path secret or ``X-Textbackd-Secret``
==========================================  ===================================================

Bad requests get a short plain-text 4xx: 400 (missing field), 403 (secret or
signature missing or wrong), 404 (no such sender of that kind), 413 (body over
``http.max_body_bytes``). The access log is off: paths may carry the secret.

Use::

    listener = Listener(config, sink)
    listener.add_get("/healthz", handler)      # before start()
    await listener.start()
    ...
    await listener.stop()
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable
from typing import TYPE_CHECKING

import structlog
from aiohttp import web

from textbackd.core.errors import ConfigError
from textbackd.senders import registry as sender_kinds
from textbackd.senders.gateway import scrub
from textbackd.senders.webhooks import SECRET_HEADER, BadRequest, WebhookContext

if TYPE_CHECKING:
    from textbackd.core.settings import Config
    from textbackd.senders.base import InboundSink, Sender

log = structlog.get_logger(__name__)

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
__all__ = ["Listener", "webhook_urls", "BadRequest", "SECRET_HEADER"]


def webhook_urls(config: Config) -> dict[str, dict[str, str]]:
    """What an admin configures on each gateway, per sender name (secrets shown as ``<http.secret>``)."""
    out: dict[str, dict[str, str]] = {}
    for sc in config.senders:
        urls = sender_kinds.get(sc.kind).webhook_urls(sc, config)
        if urls:
            out[sc.name] = dict(urls)
    return out


class Listener:
    """aiohttp server for gateway webhooks; ``add_get``/``add_route`` let others add pages before ``start``."""

    def __init__(self, config: Config, sink: InboundSink, senders: Iterable[Sender] = ()) -> None:
        self.ctx = WebhookContext(config, sink)
        self.senders = {s.name: s for s in senders}
        self.app = web.Application(client_max_size=config.http.max_body_bytes)
        self.app.middlewares.append(self._errors)
        self._runner: web.AppRunner | None = None
        self._site: web.TCPSite | None = None
        self.port: int | None = None
        for kind in sender_kinds.all_kinds():
            for route in kind.routes(self.ctx):
                self.app.router.add_route(route.method, route.path, route.handler)

    @property
    def config(self) -> Config:
        return self.ctx.config

    @config.setter
    def config(self, value: Config) -> None:  # a reload
        self.ctx.config = value

    @property
    def sink(self) -> InboundSink:
        return self.ctx.sink

    # --- life cycle ----------------------------------------------------------------

    def add_get(self, path: str, handler: Handler) -> None:
        """Add a GET page (``/healthz``, ``/metrics``); call before ``start``."""
        self.app.router.add_get(path, handler)

    def add_route(self, method: str, path: str, handler: Handler) -> None:
        self.app.router.add_route(method, path, handler)

    def add_subapp(self, prefix: str, app: web.Application) -> None:
        """Mount a sub-application (the JSON API at ``/api/v1``); call before ``start``."""
        self.app.add_subapp(prefix, app)

    async def start(self) -> None:
        """Bind ``http.listen``; ``self.port`` is the bound port (useful with port 0)."""
        http = self.config.http
        self._runner = web.AppRunner(self.app, access_log=None, handle_signals=False)
        await self._runner.setup()
        self._site = web.TCPSite(self._runner, http.host, http.port, reuse_address=True)
        try:
            await self._site.start()
        except OSError as e:
            await self._runner.cleanup()
            self._runner = None
            raise ConfigError(f"cannot listen on {http.listen}: {e.strerror}", key="http.listen") from None
        addresses = self._runner.addresses
        self.port = addresses[0][1] if addresses else http.port
        if not self.config.http.secret and any(sender_kinds.get(s.kind).needs_http_secret for s in self.config.senders):
            log.warning("http_secret_missing", effect="Kannel and generic HTTP webhooks answer 403 until http.secret is set")
        log.info("listener_started", host=http.host, port=self.port)

    async def stop(self) -> None:
        runner, self._runner = self._runner, None
        if runner is not None:
            await runner.cleanup()
            log.info("listener_stopped")

    # --- helpers -------------------------------------------------------------------

    @web.middleware
    async def _errors(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        try:
            return await handler(request)
        except BadRequest as e:
            log.warning("webhook_refused", route=request.match_info.route.resource.canonical
                        if request.match_info.route.resource else "?", status=e.status, reason=e.reason)
            return web.Response(status=e.status, text=e.reason + "\n")
        except web.HTTPRequestEntityTooLarge:
            return web.Response(status=413, text="body too large\n")
        except web.HTTPException:
            raise
        except Exception as e:  # the sink failed (store locked...): 500, so Kannel retries
            log.error("webhook_failed", path=request.match_info.route.resource.canonical
                      if request.match_info.route.resource else "?", error=type(e).__name__, detail=scrub(str(e)))
            return web.Response(status=500, text="internal error, try again\n")
