"""What the HTTP senders (Kannel, Twilio, generic) share: one aiohttp session each,
and one mapping of HTTP failures onto ``textbackd.errors``.

The mapping (also in the README, "SMS gateways"):

* cannot connect (refused, DNS, connect timeout), or any failure before the
  request headers left → ``SenderUnavailableError`` (nothing was sent; retried);
* a timeout or a dropped connection after the request left → ``UnknownSendError``
  (the gateway may have sent it; the outbox never retries it blindly);
* 429 and 5xx (and 408) → ``TemporarySendError`` with ``retry_after`` from
  ``Retry-After`` (seconds or an HTTP date) when the gateway gave one;
* 401/403 → ``SenderUnavailableError``: the credentials are wrong, every text
  would fail the same way, so texts wait (and may go through another sender)
  instead of being marked failed;
* any other 4xx → ``PermanentSendError`` with the provider's code in plain words.

Messages are built from the sender name, host, port, status and provider codes
only: never from a URL (Kannel's carries the password) nor a header.

The hand-over mark (``senders.base.SendTrack``): ``request(..., before_write=...)`` calls it
once the connection is up, just before the request is written, so the outbox has it on disk
before the point of no return. aiohttp retries an idempotent request (Kannel's GET) by itself
when the connection drops after it was written; that second write could make a second text, so
a second ``before_write`` for one request ends it as ``UnknownSendError`` instead. Connections
are not kept alive between texts (a stale keep-alive connection is what makes such drops
common), which costs one TCP handshake per text.
"""

from __future__ import annotations

import asyncio
import email.utils
import hashlib
import hmac
import re
import time
from dataclasses import dataclass
from datetime import timezone
from collections.abc import Callable
from types import SimpleNamespace
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

import aiohttp
import structlog

from textbackd.core.errors import (
    PermanentSendError,
    SenderUnavailableError,
    TemporarySendError,
    UnknownSendError,
)
from textbackd.senders.base import InboundSink, NullSink

if TYPE_CHECKING:
    from textbackd.core.settings import Config
    from textbackd.senders.base import GatewayConfig as SenderConfig

log = structlog.get_logger(__name__)

UNHEALTHY_SECONDS = 30.0  # healthy() is False this long after the gateway was unreachable
_DIGITS = re.compile(r"\+?\d[\d ]{5,}\d")


def scrub(text: str, limit: int = 160) -> str:
    """A provider's free text made safe for a log line or an error: one line, numbers masked."""
    one = " ".join(text.split())
    one = _DIGITS.sub(lambda m: "*" * max(0, len(m.group()) - 4) + m.group()[-4:], one)
    return one[:limit] + ("…" if len(one) > limit else "")


def retry_after_seconds(value: str | None, now: float | None = None) -> float | None:
    """``Retry-After`` as seconds: delta-seconds or an HTTP date; None when absent or unreadable."""
    if not value:
        return None
    value = value.strip()
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=timezone.utc)
    now = time.time() if now is None else now
    return max(0.0, when.timestamp() - now)


def dlr_token(secret: str, sender: str, ref: str) -> str:
    """The per-message token in a delivery-report URL (so the shared secret itself never travels)."""
    mac = hmac.new(secret.encode(), f"dlr:{sender}:{ref}".encode(), hashlib.sha256)
    return mac.hexdigest()[:32]


@dataclass(slots=True)
class Response:
    status: int
    headers: Any  # CIMultiDictProxy
    body: bytes

    @property
    def text(self) -> str:
        return self.body.decode("utf-8", "replace")

    def json(self) -> Any:
        import json

        try:
            return json.loads(self.body)
        except ValueError:
            return None


class HttpGateway:
    """Base of the HTTP senders: session, request, failure mapping, health."""

    kind = "http"
    label = "HTTP gateway"  # how errors name the provider

    def __init__(self, sender_config: SenderConfig, config: Config) -> None:
        self.name = sender_config.name
        self.kind = sender_config.kind
        self.sender_config = sender_config
        self.config = config
        self.sink: InboundSink = NullSink()
        self._session: aiohttp.ClientSession | None = None
        self._unreachable_since: float | None = None
        self.last_success_at: float | None = None  # wall-clock seconds of the last accepted request
        self.last_error: str = ""
        self.last_error_at: float | None = None

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.name!r} kind={self.kind!r} host={self.host}>"

    @property
    def host(self) -> str:
        u = urlsplit(self.endpoint)
        return u.hostname or "?"

    @property
    def port(self) -> int:
        u = urlsplit(self.endpoint)
        try:
            return u.port or (443 if u.scheme == "https" else 80)
        except ValueError:
            return 0

    @property
    def endpoint(self) -> str:
        return self.sender_config.url

    # --- Sender protocol -----------------------------------------------------------

    async def start(self, sink: InboundSink) -> None:
        """Keep ``sink`` (inbound texts arrive through the ``Listener``'s webhooks)."""
        self.sink = sink
        self._ensure_session()

    async def close(self) -> None:
        session, self._session = self._session, None
        if session is not None and not session.closed:
            await session.close()

    @staticmethod
    def handover(track: Any, ref: str | None = None) -> Callable[[], None] | None:
        """The ``before_write`` of a one-request text: part 1 of 1 (``ref``: the id the gateway will report)."""
        if track is None:
            return None
        return lambda: track.handing_over(1, 1, expected_ref=ref)

    def healthy(self) -> bool:
        since = self._unreachable_since
        return since is None or time.monotonic() - since > UNHEALTHY_SECONDS

    def status(self) -> dict[str, Any]:
        """For ``/healthz`` and the status page: the last success and the last error."""
        return {"healthy": self.healthy(), "host": self.host, "last_success_at": self.last_success_at,
                "last_error": self.last_error, "last_error_at": self.last_error_at}

    def _error(self, what: str) -> None:
        self.last_error, self.last_error_at = what, time.time()

    # --- HTTP ----------------------------------------------------------------------

    def _ensure_session(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            trace = aiohttp.TraceConfig()

            async def headers_sent(_s: Any, ctx: SimpleNamespace, _p: Any) -> None:
                ctx.trace_request_ctx.sent = True

            async def connected(_s: Any, ctx: SimpleNamespace, _p: Any) -> None:
                state = ctx.trace_request_ctx
                if state is None:
                    return
                if state.writes:  # aiohttp retrying a request that was already written
                    raise UnknownSendError(
                        f"{self.label} {self.name!r} ({self.host}:{self.port}): the connection dropped after the "
                        "request was sent; not sending it again (it may have gone out)")
                state.writes += 1
                if state.before_write is not None:
                    state.before_write()

            trace.on_request_headers_sent.append(headers_sent)
            trace.on_connection_create_end.append(connected)
            trace.on_connection_reuseconn.append(connected)
            t = self.sender_config.timeout
            self._session = aiohttp.ClientSession(
                timeout=aiohttp.ClientTimeout(total=t, connect=t, sock_connect=t, sock_read=t),
                trace_configs=[trace],
                headers={"User-Agent": "textbackd"},
                connector=aiohttp.TCPConnector(force_close=True),
            )
        return self._session

    async def request(
        self, method: str, url: Any, *, before_write: Callable[[], None] | None = None, **kw: Any
    ) -> Response:
        """One HTTP exchange; network failures mapped (see the module docstring).

        ``before_write`` runs once the connection is up, before the request is written (the
        hand-over mark); whatever it raises ends the request with nothing sent.
        """
        session = self._ensure_session()
        state = SimpleNamespace(sent=False, writes=0, before_write=before_write)
        where = f"{self.label} {self.name!r} ({self.host}:{self.port})"
        try:
            async with session.request(
                method, url, allow_redirects=False, trace_request_ctx=state, **kw
            ) as resp:
                body = await resp.read()
                result = Response(resp.status, resp.headers, body)
        except (asyncio.TimeoutError, aiohttp.ClientError, OSError) as e:
            if not state.sent or isinstance(e, aiohttp.ClientConnectorError | aiohttp.ConnectionTimeoutError):
                self._unreachable_since = time.monotonic()
                reason = "timed out connecting" if isinstance(e, asyncio.TimeoutError) else "cannot connect"
                log.warning("gateway_unreachable", sender=self.name, host=self.host, port=self.port, reason=reason)
                self._error(reason)
                raise SenderUnavailableError(f"{where}: {reason}") from None
            reason = "no answer in time" if isinstance(e, asyncio.TimeoutError) else "connection lost"
            log.warning("gateway_outcome_unknown", sender=self.name, host=self.host, port=self.port, reason=reason)
            self._error(f"{reason} after the request was sent")
            raise UnknownSendError(f"{where}: {reason} after the request was sent; it may have gone out") from None
        self._unreachable_since = None
        if 200 <= result.status < 300:
            self.last_success_at = time.time()
        return result

    def fail(self, resp: Response, code: str | None = None, words: str = "") -> None:
        """Raise the error for a refused request (``words``: the provider's reason in plain words)."""
        status = resp.status
        prefix = f"{self.label} {code}" if code else f"{self.label} {self.name!r} HTTP {status}"
        detail = words or scrub(resp.text) or "no details"
        msg = f"{prefix}: {detail}"
        self._error(msg)
        if status in (429, 408) or status >= 500:
            ra = retry_after_seconds(resp.headers.get("Retry-After"))
            log.warning("gateway_busy", sender=self.name, status=status, code=code, retry_after=ra)
            raise TemporarySendError(msg, code=code, retry_after=ra)
        if status in (401, 403):
            self._unreachable_since = time.monotonic()
            log.error("gateway_refused_credentials", sender=self.name, status=status, code=code)
            raise SenderUnavailableError(f"{msg} (check the credentials of sender {self.name!r})", code=code)
        log.warning("gateway_rejected", sender=self.name, status=status, code=code)
        raise PermanentSendError(msg, code=code)
