"""``kind = "http"``: a gateway described in the config (``sender.py``), its webhooks for
replies and delivery reports (``routes.py``), the section (``config.py``)."""

from __future__ import annotations

from typing import TYPE_CHECKING
from urllib.parse import quote, urlsplit

from textbackd.core.checks import Check
from textbackd.senders.base import Route, secret_state, unreachable

if TYPE_CHECKING:
    from textbackd.core.settings import Config, Section
    from textbackd.senders.http.config import HttpSenderConfig
    from textbackd.senders.http.sender import HttpSender
    from textbackd.senders.webhooks import WebhookContext


class HttpKind:
    name = "http"
    needs_listener = True
    needs_http_secret = True
    gauges = ()

    def parse_config(self, sec: Section, name: str) -> HttpSenderConfig:
        from textbackd.senders.http.config import parse

        return parse(sec, name)

    def build(self, sc: HttpSenderConfig, config: Config) -> HttpSender:
        from textbackd.senders.http.sender import HttpSender

        return HttpSender(sc, config)

    def describe(self, sc: HttpSenderConfig) -> str:
        return f"{sc.url}" + (f" as {sc.username!r}, password {secret_state(sc.password)}" if sc.username else "")

    def routes(self, ctx: WebhookContext) -> list[Route]:
        from textbackd.senders.http.routes import routes

        return routes(ctx)

    def webhook_urls(self, sc: HttpSenderConfig, config: Config) -> dict[str, str]:
        base, n = config.http.base_url, quote(sc.name)
        return {
            "incoming": f"{base}/http/{n}/incoming/<http.secret>",
            "delivery reports": f"{base}/http/{n}/dlr/<http.secret>",
        }

    async def check(self, sc: HttpSenderConfig, config: Config, timeout: float) -> Check:
        """Reachable only: a generic gateway's credentials cannot be checked without sending."""
        import aiohttp

        netloc = urlsplit(sc.url).netloc
        try:
            async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=timeout)) as http:
                async with http.head(sc.url, allow_redirects=False) as r:
                    status = r.status
        except (aiohttp.ClientError, OSError, TimeoutError) as e:
            return unreachable(sc, netloc, e)
        return Check(f"sender {sc.name}", True, f"{netloc} reachable (HTTP {status}); credentials can only be "
                     "checked by sending (`textbackd reply` to a test phone)")


KIND = HttpKind()
