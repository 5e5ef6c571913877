"""The HTTP listener: gateway webhooks (replies and delivery reports), ``/healthz`` and ``/metrics``.

The daemon always starts it and adds ``/healthz`` and ``/metrics`` (``textbackd.metrics``) with ``add_get``.

Bound to ``[http] listen``. Every webhook route is protected:

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

import hmac
import json
from collections.abc import Awaitable, Callable, Iterable
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qsl, quote, unquote_to_bytes

import structlog
from aiohttp import web

from textbackd.core.model import DeliveryReport, IncomingText
from textbackd.core.numbers import mask, normalize
from textbackd.senders.kannel import sender as kannel_mod
from textbackd.senders.twilio import sender as twilio_mod
from textbackd.senders.gateway import dlr_token, scrub

if TYPE_CHECKING:
    from textbackd.config import Config, SenderConfig
    from textbackd.senders.base import InboundSink, Sender

log = structlog.get_logger(__name__)

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
SECRET_HEADER = "X-Textbackd-Secret"
EMPTY_TWIML = '<?xml version="1.0" encoding="UTF-8"?><Response></Response>'


class BadRequest(Exception):
    def __init__(self, status: int, reason: str) -> None:
        super().__init__(reason)
        self.status = status
        self.reason = reason


def webhook_urls(config: Config) -> dict[str, dict[str, str]]:
    """What an admin configures on each gateway, per sender name (secrets shown as ``<http.secret>``)."""
    base = config.http.base_url
    out: dict[str, dict[str, str]] = {}
    for sc in config.senders:
        n = quote(sc.name)
        if sc.kind == "kannel":
            out[sc.name] = {
                "sms-service get-url": f"{base}/kannel/{n}/incoming/<http.secret>"
                "?from=%p&to=%P&text=%a&charset=%C&coding=%c&id=%I",
                "dlr-url (sent with each text)": f"{base}/kannel/{n}/dlr?ref=…&sig=…&type=%d",
            }
        elif sc.kind == "twilio":
            out[sc.name] = {
                "A message comes in (POST)": f"{base}/twilio/{n}/incoming",
                "StatusCallback (sent with each text)": f"{base}/twilio/{n}/status",
            }
        elif sc.kind == "http":
            out[sc.name] = {
                "incoming": f"{base}/http/{n}/incoming/<http.secret>",
                "delivery reports": f"{base}/http/{n}/dlr/<http.secret>",
            }
    return out


class Listener:
    """aiohttp server for gateway webhooks; ``add_get``/``add_route`` let others add pages before ``start``."""

    def __init__(self, config: Config, sink: InboundSink, senders: Iterable[Sender] = ()) -> None:
        self.config = config
        self.sink = sink
        self.senders = {s.name: s for s in senders}
        self.app = web.Application(client_max_size=config.http.max_body_bytes)
        self.app.middlewares.append(self._errors)
        self._runner: web.AppRunner | None = None
        self._site: web.TCPSite | None = None
        self.port: int | None = None
        r = self.app.router
        for method in ("GET", "POST"):
            r.add_route(method, "/kannel/{sender}/incoming/{secret}", self.kannel_incoming)
            r.add_route(method, "/kannel/{sender}/incoming", self.kannel_incoming)
            r.add_route(method, "/http/{sender}/incoming/{secret}", self.http_incoming)
            r.add_route(method, "/http/{sender}/incoming", self.http_incoming)
            r.add_route(method, "/http/{sender}/dlr/{secret}", self.http_dlr)
            r.add_route(method, "/http/{sender}/dlr", self.http_dlr)
        r.add_get("/kannel/{sender}/dlr", self.kannel_dlr)
        r.add_post("/twilio/{sender}/incoming", self.twilio_incoming)
        r.add_post("/twilio/{sender}/status", self.twilio_status)

    # --- life cycle ----------------------------------------------------------------

    def add_get(self, path: str, handler: Handler) -> None:
        """Add a GET page (``/healthz``, ``/metrics``); call before ``start``."""
        self.app.router.add_get(path, handler)

    def add_route(self, method: str, path: str, handler: Handler) -> None:
        self.app.router.add_route(method, path, handler)

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
            from textbackd.core.errors import ConfigError

            raise ConfigError(f"cannot listen on {http.listen}: {e.strerror}", key="http.listen") from None
        addresses = self._runner.addresses
        self.port = addresses[0][1] if addresses else http.port
        if not self.config.http.secret and any(s.kind in ("kannel", "http") for s in self.config.senders):
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

    def _sender(self, request: web.Request, kind: str) -> SenderConfig:
        name = request.match_info["sender"]
        for sc in self.config.senders:
            if sc.name == name and sc.kind == kind:
                return sc
        raise BadRequest(404, f"no {kind} sender named {name!r}")

    def _check_secret(self, request: web.Request) -> None:
        secret = self.config.http.secret.reveal()
        if not secret:
            raise BadRequest(403, "webhook secret not configured (set http.secret)")
        given = request.match_info.get("secret") or request.headers.get(SECRET_HEADER) or ""
        if not given:
            raise BadRequest(403, "missing secret")
        if not hmac.compare_digest(given.encode(), secret.encode()):
            raise BadRequest(403, "wrong secret")

    async def _body(self, request: web.Request) -> bytes:
        limit = self.config.http.max_body_bytes
        if request.content_length is not None and request.content_length > limit:
            raise BadRequest(413, f"body over {limit} bytes")
        try:
            return await request.read()
        except web.HTTPRequestEntityTooLarge:
            raise BadRequest(413, f"body over {limit} bytes") from None

    async def _form(self, request: web.Request) -> list[tuple[str, str]]:
        body = await self._body(request)
        ctype = request.content_type
        if request.method == "POST" and ctype not in ("application/x-www-form-urlencoded", ""):
            raise BadRequest(415, "expected application/x-www-form-urlencoded")
        try:
            return parse_qsl(body.decode("utf-8"), keep_blank_values=True)
        except UnicodeDecodeError:
            raise BadRequest(400, "body is not UTF-8") from None

    def _incoming(self, sc: SenderConfig, frm: str, to: str | None, text: str, pid: str | None) -> IncomingText:
        region = self.config.business.default_region
        return IncomingText(
            sender=sc.name,
            from_number=normalize(frm, region),
            text=text,
            received_at=datetime.now(timezone.utc),
            to_number=normalize(to, region) if to else None,
            provider_id=pid or None,
        )

    async def _deliver_text(self, msg: IncomingText) -> None:
        log.info("sms_received", sender=msg.sender, from_=mask(msg.from_number, self.config.logging.log_numbers),
                 chars=len(msg.text), provider_id=msg.provider_id)
        await self.sink.incoming(msg)

    async def _deliver_report(self, rep: DeliveryReport) -> None:
        log.info("delivery_report", sender=rep.sender, ref=rep.reference, delivered=rep.delivered, final=rep.final,
                 detail=rep.detail)
        await self.sink.delivery_report(rep)

    # --- Kannel --------------------------------------------------------------------

    async def kannel_incoming(self, request: web.Request) -> web.Response:
        """Kannel sms-service (get-url or post-url)."""
        sc = self._sender(request, "kannel")
        self._check_secret(request)
        raw = _raw_query(request.query_string)
        body = await self._body(request)
        charset = _str(raw.get("charset")) or request.headers.get("X-Kannel-Charset") or ""
        if request.method == "POST" and "text" not in raw:
            charset = request.charset or charset or "utf-8"
            text_bytes = body
        else:
            text_bytes = raw.get("text")
            if text_bytes is None:
                raise BadRequest(400, "missing 'text' (get-url needs text=%a)")
        text = _decode(text_bytes, charset)
        frm = _str(raw.get("from")) or request.headers.get("X-Kannel-From", "")
        if not frm:
            raise BadRequest(400, "missing 'from' (add from=%p to the URL, or send-sender = true for post-url)")
        to = _str(raw.get("to")) or request.headers.get("X-Kannel-To")
        await self._deliver_text(self._incoming(sc, frm, to, text, _str(raw.get("id"))))
        # With max-messages = 0 in the sms-service Kannel sends no reply; an empty body is no reply either way.
        return web.Response(status=200, text="")

    async def kannel_dlr(self, request: web.Request) -> web.Response:
        sc = self._sender(request, "kannel")
        q = request.query
        ref, sig, typ = q.get("ref", ""), q.get("sig", ""), q.get("type", "")
        secret = self.config.http.secret.reveal()
        if not secret:
            raise BadRequest(403, "webhook secret not configured (set http.secret)")
        if not ref or not sig:
            raise BadRequest(403, "missing ref or sig")
        if not hmac.compare_digest(sig, dlr_token(secret, sc.name, ref)):
            raise BadRequest(403, "wrong sig")
        if not typ.isdigit():
            raise BadRequest(400, "missing 'type' (the dlr-url needs type=%d)")
        rep = kannel_mod.delivery_report(sc.name, ref, int(typ), datetime.now(timezone.utc))
        await self._deliver_report(rep)
        return web.Response(status=200, text="")

    # --- Twilio --------------------------------------------------------------------

    async def _twilio_form(self, request: web.Request, sc: SenderConfig) -> dict[str, str]:
        given = request.headers.get("X-Twilio-Signature")
        if not given:
            raise BadRequest(403, "missing X-Twilio-Signature")
        pairs = await self._form(request)
        url = self.config.http.base_url + request.raw_path  # what Twilio called: public URL, path and query
        if not twilio_mod.valid_signature(sc.auth_token.reveal(), url, pairs, given):
            raise BadRequest(403, "wrong X-Twilio-Signature (is http.public_url the URL Twilio calls?)")
        return dict(pairs)

    async def twilio_incoming(self, request: web.Request) -> web.Response:
        sc = self._sender(request, "twilio")
        form = await self._twilio_form(request, sc)
        if "From" not in form:
            raise BadRequest(400, "missing 'From'")
        msg = self._incoming(sc, form["From"], form.get("To"), form.get("Body", ""),
                             form.get("MessageSid") or form.get("SmsSid"))
        await self._deliver_text(msg)
        return web.Response(status=200, text=EMPTY_TWIML, content_type="text/xml")

    async def twilio_status(self, request: web.Request) -> web.Response:
        sc = self._sender(request, "twilio")
        form = await self._twilio_form(request, sc)
        rep = twilio_mod.status_report(sc.name, form, datetime.now(timezone.utc))
        if rep is None:
            raise BadRequest(400, "missing MessageSid or MessageStatus")
        await self._deliver_report(rep)
        return web.Response(status=204)

    # --- generic HTTP --------------------------------------------------------------

    async def _generic_fields(self, request: web.Request) -> dict[str, str]:
        fields: dict[str, Any] = dict(request.query)
        if request.method == "POST":
            if request.content_type == "application/json":
                try:
                    doc = json.loads(await self._body(request))
                except ValueError:
                    raise BadRequest(400, "body is not JSON") from None
                if not isinstance(doc, dict):
                    raise BadRequest(400, "JSON body must be an object")
                fields.update(doc)
            else:
                fields.update(await self._form(request))
        return {k: str(v) for k, v in fields.items() if v is not None}

    async def http_incoming(self, request: web.Request) -> web.Response:
        sc = self._sender(request, "http")
        self._check_secret(request)
        f = await self._generic_fields(request)
        frm = f.get("from") or f.get("From") or f.get("sender")
        text = f.get("text") if "text" in f else f.get("message", f.get("body", f.get("Body")))
        if not frm:
            raise BadRequest(400, "missing 'from'")
        if text is None:
            raise BadRequest(400, "missing 'text'")
        await self._deliver_text(self._incoming(sc, frm, f.get("to") or f.get("To"), text, f.get("id")))
        return web.Response(status=200, text="ok\n")

    async def http_dlr(self, request: web.Request) -> web.Response:
        sc = self._sender(request, "http")
        self._check_secret(request)
        f = await self._generic_fields(request)
        ref = f.get("id") or f.get("ref")
        status = (f.get("status") or "").lower()
        if not ref:
            raise BadRequest(400, "missing 'id'")
        if not status:
            raise BadRequest(400, "missing 'status'")
        delivered = status in ("delivered", "delivrd", "read")
        final = delivered or status in ("failed", "undelivered", "undeliv", "rejected", "expired")
        rep = DeliveryReport(sender=sc.name, reference=ref, delivered=delivered, final=final,
                             at=datetime.now(timezone.utc), detail=status[:40])
        await self._deliver_report(rep)
        return web.Response(status=200, text="ok\n")


def _raw_query(qs: str) -> dict[str, bytes]:
    """Query parameters as bytes (Kannel may send text in a charset other than UTF-8)."""
    out: dict[str, bytes] = {}
    for part in qs.split("&"):
        if not part:
            continue
        k, _, v = part.partition("=")
        key = unquote_to_bytes(k.replace("+", " ")).decode("utf-8", "replace")
        out.setdefault(key, unquote_to_bytes(v.replace("+", " ")))
    return out


def _str(b: bytes | None) -> str:
    return b.decode("utf-8", "replace") if b is not None else ""


def _decode(data: bytes, charset: str) -> str:
    cs = (charset or "utf-8").strip().strip('"').lower()
    if cs in ("ucs-2", "ucs2", "utf-16be", "utf-16"):
        cs = "utf-16-be"
    try:
        return data.decode(cs)
    except (LookupError, UnicodeDecodeError):
        raise BadRequest(400, f"text is not valid {charset or 'UTF-8'}") from None
