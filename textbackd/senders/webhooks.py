"""What every gateway kind's webhook routes share: the listener's context and its checks.

The listener (``daemon/listener.py``) builds one ``WebhookContext`` and mounts the
``Route``s each kind returns from ``SenderKind.routes(ctx)``. A handler finds its
sender (``ctx.sender``), checks the request (``ctx.check_secret`` or the kind's own
signature), reads the body within ``http.max_body_bytes`` and hands an
``IncomingText`` or a ``DeliveryReport`` to ``ctx.deliver_text`` /
``ctx.deliver_report``. A ``BadRequest`` becomes a short plain-text 4xx.
"""

from __future__ import annotations

import hmac
from datetime import datetime, timezone
from typing import TYPE_CHECKING
from urllib.parse import parse_qsl

import structlog
from aiohttp import web

from textbackd.core.model import DeliveryReport, IncomingText
from textbackd.core.numbers import mask, normalize

if TYPE_CHECKING:
    from textbackd.core.settings import Config, SenderConfig
    from textbackd.senders.base import InboundSink

log = structlog.get_logger(__name__)

SECRET_HEADER = "X-Textbackd-Secret"


class BadRequest(Exception):
    def __init__(self, status: int, reason: str) -> None:
        super().__init__(reason)
        self.status = status
        self.reason = reason


class WebhookContext:
    """The config and the sink, as the listener holds them now (a reload replaces ``config``)."""

    def __init__(self, config: Config, sink: InboundSink) -> None:
        self.config = config
        self.sink = sink

    def sender(self, request: web.Request, kind: str) -> SenderConfig:
        name = request.match_info["sender"]
        for sc in self.config.senders:
            if sc.name == name and sc.kind == kind:
                return sc
        raise BadRequest(404, f"no {kind} sender named {name!r}")

    def check_secret(self, request: web.Request) -> None:
        secret = self.config.http.secret.reveal()
        if not secret:
            raise BadRequest(403, "webhook secret not configured (set http.secret)")
        given = request.match_info.get("secret") or request.headers.get(SECRET_HEADER) or ""
        if not given:
            raise BadRequest(403, "missing secret")
        if not hmac.compare_digest(given.encode(), secret.encode()):
            raise BadRequest(403, "wrong secret")

    async def body(self, request: web.Request) -> bytes:
        limit = self.config.http.max_body_bytes
        if request.content_length is not None and request.content_length > limit:
            raise BadRequest(413, f"body over {limit} bytes")
        try:
            return await request.read()
        except web.HTTPRequestEntityTooLarge:
            raise BadRequest(413, f"body over {limit} bytes") from None

    async def form(self, request: web.Request) -> list[tuple[str, str]]:
        body = await self.body(request)
        ctype = request.content_type
        if request.method == "POST" and ctype not in ("application/x-www-form-urlencoded", ""):
            raise BadRequest(415, "expected application/x-www-form-urlencoded")
        try:
            return parse_qsl(body.decode("utf-8"), keep_blank_values=True)
        except UnicodeDecodeError:
            raise BadRequest(400, "body is not UTF-8") from None

    def incoming(self, sc: SenderConfig, frm: str, to: str | None, text: str, pid: str | None) -> IncomingText:
        region = self.config.business.default_region
        return IncomingText(
            sender=sc.name,
            from_number=normalize(frm, region),
            text=text,
            received_at=datetime.now(timezone.utc),
            to_number=normalize(to, region) if to else None,
            provider_id=pid or None,
        )

    async def deliver_text(self, msg: IncomingText) -> None:
        log.info("sms_received", sender=msg.sender, from_=mask(msg.from_number, self.config.logging.log_numbers),
                 chars=len(msg.text), provider_id=msg.provider_id)
        await self.sink.incoming(msg)

    async def deliver_report(self, rep: DeliveryReport) -> None:
        log.info("delivery_report", sender=rep.sender, ref=rep.reference, delivered=rep.delivered, final=rep.final,
                 detail=rep.detail)
        await self.sink.delivery_report(rep)
