"""``kind = "kannel"``: texts through Kannel's smsbox ``sendsms`` (``sender.py``), replies and
delivery reports through its webhooks (``routes.py``), the section (``config.py``)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any
from urllib.parse import quote, urlsplit

from textbackd.core.checks import Check
from textbackd.senders.base import Route, secret_state, unreachable

if TYPE_CHECKING:
    from textbackd.core.settings import Config, Section
    from textbackd.senders.kannel.config import KannelConfig
    from textbackd.senders.kannel.sender import KannelSender
    from textbackd.senders.webhooks import WebhookContext


class KannelKind:
    name = "kannel"
    needs_listener = True
    needs_http_secret = True
    gauges = ()

    def parse_config(self, sec: Section, name: str) -> KannelConfig:
        from textbackd.senders.kannel.config import parse

        return parse(sec, name)

    def build(self, sc: KannelConfig, config: Config) -> KannelSender:
        from textbackd.senders.kannel.sender import KannelSender

        return KannelSender(sc, config)

    def describe(self, sc: KannelConfig) -> str:
        return f"{sc.url} as {sc.username!r}, password {secret_state(sc.password)}"

    def routes(self, ctx: WebhookContext) -> list[Route]:
        from textbackd.senders.kannel.routes import routes

        return routes(ctx)

    def webhook_urls(self, sc: KannelConfig, config: Config) -> dict[str, str]:
        base, n = config.http.base_url, quote(sc.name)
        return {
            "sms-service get-url": f"{base}/kannel/{n}/incoming/<http.secret>"
            "?from=%p&to=%P&text=%a&charset=%C&coding=%c&id=%I",
            "dlr-url (sent with each text)": f"{base}/kannel/{n}/dlr?ref=…&sig=…&type=%d",
        }

    async def check(self, sc: KannelConfig, config: Config, timeout: float) -> Check:
        """sendsms reachable and the login accepted: a request with no receiver (Kannel checks the
        login first and sends nothing)."""
        import aiohttp

        name, netloc = f"sender {sc.name}", urlsplit(sc.url).netloc
        try:
            async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=timeout)) as http:
                params: Any = {"username": sc.username, "password": sc.password.reveal()}
                async with http.get(sc.url, params=params) as r:
                    body = (await r.text(errors="replace")).strip()
        except (aiohttp.ClientError, OSError, TimeoutError) as e:
            return unreachable(sc, netloc, e)
        if r.status == 403 or "authorization failed" in body.lower():
            return Check(name, False, f"Kannel at {netloc} refused the credentials ({r.status}: {body[:60]})",
                         f"username/password of sender {sc.name!r} must match a sendsms-user group in kannel.conf")
        return Check(name, True, f"Kannel at {netloc} reachable, credentials accepted (nothing sent)")



KIND = KannelKind()
