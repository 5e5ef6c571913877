"""Twilio's webhooks, each signed with ``X-Twilio-Signature`` under the sender's auth token.

``POST /twilio/{sender}/incoming`` (A message comes in) and ``POST /twilio/{sender}/status``
(StatusCallback).
"""

from __future__ import annotations

from datetime import datetime, timezone

from aiohttp import web

from textbackd.senders.base import Route
from textbackd.senders.twilio.config import TwilioConfig
from textbackd.senders.twilio.sender import status_report, valid_signature
from textbackd.senders.webhooks import BadRequest, WebhookContext

EMPTY_TWIML = '<?xml version="1.0" encoding="UTF-8"?><Response></Response>'


def routes(ctx: WebhookContext) -> list[Route]:
    async def signed_form(request: web.Request, sc: TwilioConfig) -> dict[str, str]:
        given = request.headers.get("X-Twilio-Signature")
        if not given:
            raise BadRequest(403, "missing X-Twilio-Signature")
        pairs = await ctx.form(request)
        url = ctx.config.http.base_url + request.raw_path  # what Twilio called: public URL, path and query
        if not valid_signature(sc.auth_token.reveal(), url, pairs, given):
            raise BadRequest(403, "wrong X-Twilio-Signature (is http.public_url the URL Twilio calls?)")
        return dict(pairs)

    async def incoming(request: web.Request) -> web.Response:
        sc = ctx.sender(request, "twilio")
        form = await signed_form(request, sc)  # type: ignore[arg-type]
        if "From" not in form:
            raise BadRequest(400, "missing 'From'")
        msg = ctx.incoming(sc, form["From"], form.get("To"), form.get("Body", ""),
                           form.get("MessageSid") or form.get("SmsSid"))
        await ctx.deliver_text(msg)
        return web.Response(status=200, text=EMPTY_TWIML, content_type="text/xml")

    async def status(request: web.Request) -> web.Response:
        sc = ctx.sender(request, "twilio")
        form = await signed_form(request, sc)  # type: ignore[arg-type]
        rep = status_report(sc.name, form, datetime.now(timezone.utc))
        if rep is None:
            raise BadRequest(400, "missing MessageSid or MessageStatus")
        await ctx.deliver_report(rep)
        return web.Response(status=204)

    return [Route("POST", "/twilio/{sender}/incoming", incoming), Route("POST", "/twilio/{sender}/status", status)]
