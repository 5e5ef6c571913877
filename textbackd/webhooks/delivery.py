"""Delivering one endpoint's queue: signed POSTs, in event order, one at a time.

Each ``[[webhooks]]`` endpoint gets an ``Endpoint`` whose ``process`` the daemon runs on its own
``daemon/worker.py`` worker, so a slow or dead endpoint never holds back texting or another
endpoint. ``process`` takes the head of the endpoint's queue (the oldest pending event), and only
when it is done (delivered or failed for good) the next one: a receiver sees events in the order
they happened.

The answer decides (status classes as Standard Webhooks receivers use them):

==============================  =========================================================
2xx                             delivered
410 Gone                        the endpoint is disabled, what waited for it fails, the
                                admin is told (log + staff mail); ``textbackd webhooks
                                enable NAME`` turns it back on
408, 409, 429, 5xx, 3xx,        tried again: exponential backoff with jitter from
timeouts, refused connections   ``retry_base_seconds`` doubling up to ``retry_max_seconds``,
                                or the receiver's ``Retry-After``; after ``retry_hours``
                                (24 h) the event fails
any other 4xx                   failed at once (permanent), logged with the status
==============================  =========================================================

Every try carries the same ``webhook-id`` (the event's ``uid``) with a fresh ``webhook-timestamp``
and signature. Requests have capped timeouts, redirects are not followed, at most
``MAX_RESPONSE_BYTES`` of an answer are read, and an answer's body is never logged; neither is
the secret.
"""

from __future__ import annotations

import email.utils
import json
import random
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import aiohttp
import structlog

from textbackd import __version__
from textbackd.core.model import DeliveryRow
from textbackd.core.settings import WebhookConfig
from textbackd.core.timeutil import iso, utc_from_epoch
from textbackd.store import webhooks as wh_q
from textbackd.store.db import Store
from textbackd.webhooks.signing import signed_headers

log = structlog.get_logger(__name__)

MAX_RESPONSE_BYTES = 64 * 1024
RETRYABLE_4XX = frozenset({408, 409, 429})


@dataclass(frozen=True, slots=True)
class Attempt:
    """What one POST gave: a status (None: no answer) and a short reason for people."""

    status: int | None
    error: str = ""
    retry_after: float | None = None

    @property
    def ok(self) -> bool:
        return self.status is not None and 200 <= self.status < 300

    @property
    def gone(self) -> bool:
        return self.status == 410

    @property
    def permanent(self) -> bool:
        return self.status is not None and 400 <= self.status < 500 and self.status not in RETRYABLE_4XX


def body_of(event_type: str, at: float, data: dict[str, Any]) -> bytes:
    """The JSON body: ``{"type", "timestamp", "data"}`` (Standard Webhooks' shape)."""
    return json.dumps({"type": event_type, "timestamp": iso(utc_from_epoch(at)), "data": data},
                      ensure_ascii=False, separators=(",", ":")).encode()


def parse_retry_after(value: str | None, now: float) -> float | None:
    """Seconds to wait from a ``Retry-After`` header (delta-seconds or an HTTP date)."""
    if not value:
        return None
    v = value.strip()
    if v.isdigit():
        return float(v)
    try:
        when = email.utils.parsedate_to_datetime(v)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - now)


async def post(session: aiohttp.ClientSession, wc: WebhookConfig, msg_id: str, body: bytes, *, now: float) -> Attempt:
    """One signed POST of ``body`` to the endpoint; never raises for network trouble."""
    headers = {"Content-Type": "application/json", "User-Agent": f"textbackd/{__version__}",
               **signed_headers(wc.secret, msg_id, int(now), body)}
    try:
        async with session.post(wc.url, data=body, headers=headers, allow_redirects=False,
                                timeout=aiohttp.ClientTimeout(total=wc.timeout)) as r:
            await r.content.read(MAX_RESPONSE_BYTES)  # read a little (keeps the connection usable), never log it
            error = "" if 200 <= r.status < 300 else f"HTTP {r.status}"
            if 300 <= r.status < 400:
                error += " (redirects are not followed)"
            return Attempt(r.status, error, parse_retry_after(r.headers.get("Retry-After"), now))
    except TimeoutError:
        return Attempt(None, f"no answer within {wc.timeout:g} s")
    except aiohttp.ClientConnectorError as e:
        return Attempt(None, f"cannot connect: {e.os_error.strerror if e.os_error and e.os_error.strerror else type(e).__name__}")
    except (aiohttp.ClientError, OSError, ValueError) as e:  # TLS, DNS, a reset: the receiver's side, retried
        return Attempt(None, f"request failed: {type(e).__name__}")


async def ping(wc: WebhookConfig, *, now: float | None = None) -> tuple[str, Attempt]:
    """A signed ``ping`` (``textbackd webhooks test NAME``): its webhook-id and what the endpoint answered."""
    from textbackd.store.events import new_uid

    now = time.time() if now is None else now
    msg_id = new_uid()
    body = body_of("ping", now, {"endpoint": wc.name, "message": "textbackd webhook test"})
    async with aiohttp.ClientSession() as session:
        return msg_id, await post(session, wc, msg_id, body, now=now)


class Endpoint:
    """One endpoint's queue. ``process`` is the worker's job; ``next_due`` tells it when to look again."""

    def __init__(
        self,
        store: Store,
        wc: WebhookConfig,
        *,
        clock: Callable[[], float] = time.time,
        on_result: Callable[[str, str], None] = lambda endpoint, result: None,
        on_disabled: Callable[[str, str], None] = lambda endpoint, reason: None,
    ) -> None:
        self.store = store
        self.wc = wc
        self.clock = clock
        self.on_result = on_result
        self.on_disabled = on_disabled
        self.stopping = False
        self._session: aiohttp.ClientSession | None = None

    @property
    def name(self) -> str:
        return self.wc.name

    def next_due(self) -> float | None:
        return wh_q.next_try(self.store, self.name)

    async def close(self) -> None:
        self.stopping = True
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def process(self) -> int:
        """Deliver what is due, head first; stop at the first event that must wait. Returns how many were settled."""
        settled = 0
        while not self.stopping:
            d = wh_q.head(self.store, self.name)
            if d is None or d.next_try > self.clock():
                return settled
            if self._session is None:
                self._session = aiohttp.ClientSession()
            now = self.clock()
            attempt = await post(self._session, self.wc, d.event.uid, body_of(d.event.type, d.event.at, d.event.data),
                                 now=now)
            if self._settle(d, attempt):
                settled += 1
            else:
                return settled
        return settled

    def _settle(self, d: DeliveryRow, a: Attempt) -> bool:
        """Record what ``a`` means for ``d``; True when ``d`` is done (the next event may go)."""
        now = self.clock()
        fields = {"endpoint": self.name, "type": d.event.type, "webhook_id": d.event.uid, "attempt": d.attempts + 1}
        if a.ok:
            wh_q.delivered(self.store, d.id, now=now, status=a.status or 0)
            self.on_result(self.name, "delivered")
            log.info("webhook_delivered", status=a.status, **fields)
            return True
        if a.gone:
            reason = f"{self.wc.url} answered 410 Gone"
            n = wh_q.disable(self.store, self.name, now=now, reason=reason)
            self.on_result(self.name, "gone")
            log.error("webhook_endpoint_disabled", reason=reason, dropped=n, fix=f"textbackd webhooks enable {self.name}",
                      **fields)
            self.on_disabled(self.name, reason)
            return False
        if a.permanent:
            wh_q.fail(self.store, d.id, status=a.status, error=a.error)
            self.on_result(self.name, "failed")
            log.error("webhook_refused", status=a.status, reason=a.error, effect="not retried (a permanent 4xx)", **fields)
            return True
        attempts = d.attempts + 1
        delay = min(self.wc.retry_max_seconds, self.wc.retry_base_seconds * 2 ** (attempts - 1))
        delay *= random.uniform(0.75, 1.25)
        if a.retry_after is not None:
            delay = a.retry_after
        horizon = d.created + self.wc.retry_hours * 3600
        if now + delay > horizon:
            error = f"gave up after {attempts} tries over {self.wc.retry_hours:g} h: {a.error}"
            wh_q.fail(self.store, d.id, status=a.status, error=error)
            self.on_result(self.name, "failed")
            log.error("webhook_given_up", reason=a.error, **fields)
            return True
        wh_q.retry(self.store, d.id, at=now + delay, status=a.status, error=a.error)
        self.on_result(self.name, "retry")
        log.warning("webhook_failed_will_retry", status=a.status, reason=a.error, retry_in=round(delay, 1), **fields)
        return False

