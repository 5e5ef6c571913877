"""The generic gateway's webhooks, protected by ``http.secret`` in the path or a header.

``GET|POST /http/{sender}/incoming[/{s}]`` (fields ``from``, ``text``, ``to``, ``id``) and
``GET|POST /http/{sender}/dlr[/{s}]`` (fields ``id``, ``status``).
"""

from __future__ import annotations

import json
from datetime import datetime, timezone
from typing import Any

from aiohttp import web

from textbackd.core.model import DeliveryReport
from textbackd.senders.base import Route
from textbackd.senders.webhooks import BadRequest, WebhookContext


def routes(ctx: WebhookContext) -> list[Route]:
    async def fields_of(request: web.Request) -> dict[str, str]:
        fields: dict[str, Any] = dict(request.query)
        if request.method == "POST":
            if request.content_type == "application/json":
                try:
                    doc = json.loads(await ctx.body(request))
                except ValueError:
                    raise BadRequest(400, "body is not JSON") from None
                if not isinstance(doc, dict):
                    raise BadRequest(400, "JSON body must be an object")
                fields.update(doc)
            else:
                fields.update(await ctx.form(request))
        return {k: str(v) for k, v in fields.items() if v is not None}

    async def incoming(request: web.Request) -> web.Response:
        sc = ctx.sender(request, "http")
        ctx.check_secret(request)
        f = await fields_of(request)
        frm = f.get("from") or f.get("From") or f.get("sender")
        text = f.get("text") if "text" in f else f.get("message", f.get("body", f.get("Body")))
        if not frm:
            raise BadRequest(400, "missing 'from'")
        if text is None:
            raise BadRequest(400, "missing 'text'")
        await ctx.deliver_text(ctx.incoming(sc, frm, f.get("to") or f.get("To"), text, f.get("id")))
        return web.Response(status=200, text="ok\n")

    async def dlr(request: web.Request) -> web.Response:
        sc = ctx.sender(request, "http")
        ctx.check_secret(request)
        f = await fields_of(request)
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
        await ctx.deliver_report(rep)
        return web.Response(status=200, text="ok\n")

    out = []
    for method in ("GET", "POST"):
        out += [Route(method, "/http/{sender}/incoming/{secret}", incoming),
                Route(method, "/http/{sender}/incoming", incoming),
                Route(method, "/http/{sender}/dlr/{secret}", dlr),
                Route(method, "/http/{sender}/dlr", dlr)]
    return out
