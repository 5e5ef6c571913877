"""Serve the front desk: bind ``[web] listen`` (with TLS when ``tls_cert``/``tls_key`` are set) and
write an access log that never shows a customer's number or words.

The access log is one structlog event per request (``web_request``: method, path, status,
milliseconds, user). The query string is never logged (a number search lives there), and every run of
six or more digits in the path is masked like every other number in the logs (``numbers.mask``)
unless ``[logging] log_numbers = "full"``.
"""

from __future__ import annotations

import re
import ssl
from typing import Any

import structlog
from aiohttp import web
from aiohttp.abc import AbstractAccessLogger

from textbackd.core.errors import ConfigError
from textbackd.core.numbers import mask
from textbackd.core.settings import Config, WebConfig

log = structlog.get_logger(__name__)
_DIGITS = re.compile(r"(?:%2B|\+)?\d{6,}")


def scrub_path(path: str, log_numbers: str) -> str:
    """``/conversations/+12125550101`` → ``/conversations/********0101`` (unless ``full``)."""
    if log_numbers == "full":
        return path
    return _DIGITS.sub(lambda m: mask(m.group(0).replace("%2B", "+"), "masked"), path)


def access_logger(log_numbers: str) -> type[AbstractAccessLogger]:
    class AccessLog(AbstractAccessLogger):
        def log(self, request: web.BaseRequest, response: web.StreamResponse, time: float) -> None:
            from textbackd.web.guard import SESSION

            s = request.get(SESSION)
            log.info("web_request", method=request.method, path=scrub_path(request.path, log_numbers),
                     status=response.status, ms=round(time * 1000, 1), user=s.user.name if s else None)

    return AccessLog


class WebServer:
    def __init__(self, app: web.Application, config: Config) -> None:
        self.app = app
        self.config = config
        self.web: WebConfig = config.web or WebConfig()
        self._runner: web.AppRunner | None = None
        self.port: int | None = None

    @property
    def url(self) -> str:
        scheme = "https" if self.web.tls else "http"
        host = self.web.host if ":" not in self.web.host else f"[{self.web.host}]"
        return f"{scheme}://{host}:{self.port}/"

    async def start(self) -> None:
        ctx: Any = None
        if self.web.tls:
            try:
                ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
                ctx.minimum_version = ssl.TLSVersion.TLSv1_2
                ctx.load_cert_chain(self.web.tls_cert, self.web.tls_key)
            except (OSError, ssl.SSLError) as e:
                raise ConfigError(f"cannot load the certificate: {e}", key="web.tls_cert") from None
        self._runner = web.AppRunner(self.app, handle_signals=False, access_log_class=access_logger(
            self.config.logging.log_numbers), shutdown_timeout=2.0)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.web.host, self.web.port, ssl_context=ctx, reuse_address=True)
        try:
            await site.start()
        except OSError as e:
            await self._runner.cleanup()
            self._runner = None
            raise ConfigError(f"cannot listen on {self.web.listen}: {e.strerror}", key="web.listen") from None
        addrs = self._runner.addresses
        self.port = addrs[0][1] if addrs else self.web.port
        log.info("web_started", url=self.url, tls=self.web.tls)

    async def stop(self) -> None:
        runner, self._runner = self._runner, None
        if runner is not None:
            await runner.cleanup()
            log.info("web_stopped")
