"""Kannel's webhooks: replies from its ``sms-service`` and delivery reports to our ``dlr-url``.

==========================================  ===================================================
route                                       protection
==========================================  ===================================================
``GET|POST /kannel/{sender}/incoming/{s}``  ``{s}`` = ``http.secret`` (Kannel sms-service URL)
``GET|POST /kannel/{sender}/incoming``      header ``X-Textbackd-Secret: <http.secret>``
``GET /kannel/{sender}/dlr?ref&sig&type``   ``sig`` = per-message HMAC under ``http.secret``
==========================================  ===================================================
"""

from __future__ import annotations

import hmac
from datetime import datetime, timezone
from urllib.parse import unquote_to_bytes

from aiohttp import web

from textbackd.senders.base import Route
from textbackd.senders.gateway import dlr_token
from textbackd.senders.kannel.sender import delivery_report
from textbackd.senders.webhooks import BadRequest, WebhookContext


def routes(ctx: WebhookContext) -> list[Route]:
    async def incoming(request: web.Request) -> web.Response:
        """Kannel sms-service (get-url or post-url)."""
        sc = ctx.sender(request, "kannel")
        ctx.check_secret(request)
        raw = _raw_query(request.query_string)
        body = await ctx.body(request)
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
        await ctx.deliver_text(ctx.incoming(sc, frm, to, text, _str(raw.get("id"))))
        # With max-messages = 0 in the sms-service Kannel sends no reply; an empty body is no reply either way.
        return web.Response(status=200, text="")

    async def dlr(request: web.Request) -> web.Response:
        sc = ctx.sender(request, "kannel")
        q = request.query
        ref, sig, typ = q.get("ref", ""), q.get("sig", ""), q.get("type", "")
        secret = ctx.config.http.secret.reveal()
        if not secret:
            raise BadRequest(403, "webhook secret not configured (set http.secret)")
        if not ref or not sig:
            raise BadRequest(403, "missing ref or sig")
        if not hmac.compare_digest(sig, dlr_token(secret, sc.name, ref)):
            raise BadRequest(403, "wrong sig")
        if not typ.isdigit():
            raise BadRequest(400, "missing 'type' (the dlr-url needs type=%d)")
        await ctx.deliver_report(delivery_report(sc.name, ref, int(typ), datetime.now(timezone.utc)))
        return web.Response(status=200, text="")

    out = []
    for method in ("GET", "POST"):
        out += [Route(method, "/kannel/{sender}/incoming/{secret}", incoming),
                Route(method, "/kannel/{sender}/incoming", incoming)]
    out.append(Route("GET", "/kannel/{sender}/dlr", dlr))
    return out


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
