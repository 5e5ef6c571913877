"""``kind = "twilio"``: texts through Twilio's Messages API (``sender.py``), replies and status
callbacks through signed webhooks (``routes.py``), the section (``config.py``)."""

from __future__ import annotations

from typing import TYPE_CHECKING
from urllib.parse import quote

from textbackd.core.checks import Check
from textbackd.senders.base import Route, secret_state, unreachable

if TYPE_CHECKING:
    from textbackd.core.settings import Config, Section
    from textbackd.senders.twilio.config import TwilioConfig
    from textbackd.senders.twilio.sender import TwilioSender
    from textbackd.senders.webhooks import WebhookContext


class TwilioKind:
    name = "twilio"
    needs_listener = True
    needs_http_secret = False  # Twilio signs its webhooks with the account's auth token
    gauges = ()

    def parse_config(self, sec: Section, name: str) -> TwilioConfig:
        from textbackd.senders.twilio.config import parse

        return parse(sec, name)

    def build(self, sc: TwilioConfig, config: Config) -> TwilioSender:
        from textbackd.senders.twilio.sender import TwilioSender

        return TwilioSender(sc, config)

    def describe(self, sc: TwilioConfig) -> str:
        return f"account {sc.account_sid}, from {sc.from_ or sc.messaging_service_sid}, token {secret_state(sc.auth_token)}"

    def routes(self, ctx: WebhookContext) -> list[Route]:
        from textbackd.senders.twilio.routes import routes

        return routes(ctx)

    def webhook_urls(self, sc: TwilioConfig, config: Config) -> dict[str, str]:
        base, n = config.http.base_url, quote(sc.name)
        return {
            "A message comes in (POST)": f"{base}/twilio/{n}/incoming",
            "StatusCallback (sent with each text)": f"{base}/twilio/{n}/status",
        }

    async def check(self, sc: TwilioConfig, config: Config, timeout: float) -> Check:
        """The account resource with the credentials: a GET, nothing sent."""
        from urllib.parse import urlsplit

        import aiohttp

        name = f"sender {sc.name}"
        url = f"{sc.api_base.rstrip('/')}/2010-04-01/Accounts/{sc.account_sid}.json"
        try:
            async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=timeout)) as http:
                auth = aiohttp.BasicAuth(sc.account_sid, sc.auth_token.reveal())
                async with http.get(url, auth=auth) as r:
                    status = r.status
        except (aiohttp.ClientError, OSError, TimeoutError) as e:
            return unreachable(sc, urlsplit(sc.api_base).netloc, e)
        if status in (401, 403, 404):
            return Check(name, False, f"Twilio refused account {sc.account_sid!r} ({status})",
                         f"check account_sid and auth_token of sender {sc.name!r} in the Twilio console")
        if status >= 400:
            return Check(name, False, f"Twilio answered {status}", "try again; see status.twilio.com")
        return Check(name, True, "Twilio reachable, credentials accepted (nothing sent)")


KIND = TwilioKind()
