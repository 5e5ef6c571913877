"""Twilio's Programmable Messaging API (``kind = "twilio"``).

``POST {api_base}/2010-04-01/Accounts/{AccountSid}/Messages.json`` with HTTP
basic auth (Account SID, Auth Token) and an ``application/x-www-form-urlencoded``
body of ``To``, ``From`` and/or ``MessagingServiceSid``, ``Body`` and
``StatusCallback`` (``{public_url}/twilio/{sender}/status``). Twilio answers
``201`` with the Message resource (``sid``, ``num_segments``...) or an error
object ``{"code": 21211, "message": ..., "status": 400}``.

Inbound: Twilio signs each webhook with ``X-Twilio-Signature`` =
base64(HMAC-SHA1(auth token, full URL + every POST parameter name and value,
sorted by name)); ``signature`` computes it and ``valid_signature`` checks it.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from collections.abc import Iterable
from urllib.parse import quote, urlencode

import structlog

from textbackd.core.errors import UnknownSendError
from textbackd.core.model import DeliveryReport, SendResult
from textbackd.core.numbers import mask
from textbackd.core.sms import analyze
from textbackd.senders.base import InboundSink, SendTrack
from textbackd.senders.gateway import HttpGateway, Response, scrub

log = structlog.get_logger(__name__)

# Twilio error codes in plain words (https://www.twilio.com/docs/api/errors).
ERROR_WORDS = {
    "20003": "authentication failed (check account_sid and auth_token)",
    "20404": "resource not found (check account_sid)",
    "20429": "too many requests",
    "21211": "invalid 'To' number",
    "21212": "invalid 'From' number",
    "21401": "invalid phone number",
    "21408": "SMS to this region is not enabled on the account",
    "21602": "message body is required",
    "21606": "the 'From' number cannot send SMS",
    "21610": "the recipient has replied STOP to this number",
    "21611": "the 'From' number has too many queued messages",
    "21612": "this 'To' number cannot be reached from this 'From' number",
    "21614": "'To' is not a mobile number",
    "21617": "message body too long",
    "21659": "the 'From' number is not a Twilio number of this account",
    "21703": "the messaging service has no sender for this number",
}
TEMPORARY_CODES = {"20429", "21611"}

# MessageStatus of a StatusCallback → (delivered, final)
STATUS = {
    "accepted": (False, False),
    "scheduled": (False, False),
    "queued": (False, False),
    "sending": (False, False),
    "sent": (False, False),
    "receiving": (False, False),
    "received": (False, False),
    "delivered": (True, True),
    "read": (True, True),
    "undelivered": (False, True),
    "failed": (False, True),
    "canceled": (False, True),
}


def signature(auth_token: str, url: str, params: Iterable[tuple[str, str]]) -> str:
    """Twilio's X-Twilio-Signature for a request to ``url`` with form ``params``."""
    values: dict[str, set[str]] = {}
    for k, v in params:
        values.setdefault(k, set()).add(v)
    # as Twilio's helper libraries: names sorted, each name's distinct values sorted
    data = url + "".join(k + v for k in sorted(values) for v in sorted(values[k]))
    mac = hmac.new(auth_token.encode("utf-8"), data.encode("utf-8"), hashlib.sha1)
    return base64.b64encode(mac.digest()).decode("ascii")


def basic_auth(user: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{user}:{password}".encode("utf-8")).decode("ascii")


def _port_variants(url: str) -> list[str]:
    """``url`` as given plus with/without the default port (Twilio signs what it called)."""
    from urllib.parse import urlsplit, urlunsplit

    u = urlsplit(url)
    default = {"https": 443, "http": 80}.get(u.scheme)
    out = [url]
    if default is None or u.hostname is None:
        return out
    host = u.hostname if ":" not in u.hostname else f"[{u.hostname}]"
    if u.port is None:
        out.append(urlunsplit(u._replace(netloc=f"{host}:{default}")))
    elif u.port == default:
        out.append(urlunsplit(u._replace(netloc=host)))
    return out


def valid_signature(auth_token: str, url: str, params: Iterable[tuple[str, str]], given: str | None) -> bool:
    if not given or not auth_token:
        return False
    params = list(params)
    return any(
        hmac.compare_digest(signature(auth_token, u, params), given) for u in _port_variants(url)
    )


def status_report(sender: str, form: dict[str, str], at) -> DeliveryReport | None:
    sid = form.get("MessageSid") or form.get("SmsSid")
    status = (form.get("MessageStatus") or form.get("SmsStatus") or "").lower()
    if not sid or not status:
        return None
    delivered, final = STATUS.get(status, (False, False))
    code = form.get("ErrorCode") or ""
    detail = status + (f" (Twilio {code}: {ERROR_WORDS.get(code, 'see the Twilio console')})" if code else "")
    return DeliveryReport(sender=sender, reference=sid, delivered=delivered, final=final, at=at, detail=detail)


class TwilioSender(HttpGateway):
    label = "Twilio"

    @property
    def endpoint(self) -> str:
        return self.sender_config.api_base

    @property
    def messages_url(self) -> str:
        sc = self.sender_config
        return f"{sc.api_base.rstrip('/')}/2010-04-01/Accounts/{quote(sc.account_sid, safe='')}/Messages.json"

    @property
    def status_callback(self) -> str | None:
        """Our StatusCallback URL; None without ``http.public_url`` (Twilio cannot reach a local address)."""
        if not self.config.http.public_url:
            return None
        return f"{self.config.http.base_url}/twilio/{quote(self.name)}/status"

    async def start(self, sink: InboundSink) -> None:
        await super().start(sink)
        if self.status_callback is None:
            log.warning("twilio_no_status_callback", sender=self.name,
                        effect="no delivery reports: set http.public_url to the URL Twilio can reach")

    def form(self, to: str, text: str) -> list[tuple[str, str]]:
        sc = self.sender_config
        f = [("To", to)]
        if sc.from_:
            f.append(("From", sc.from_))
        if sc.messaging_service_sid:
            f.append(("MessagingServiceSid", sc.messaging_service_sid))
        f.append(("Body", text))
        if self.status_callback:
            f.append(("StatusCallback", self.status_callback))
        return f

    async def send(self, to: str, text: str, track: SendTrack | None = None) -> SendResult:
        info = analyze(text)
        sc = self.sender_config
        body = urlencode(self.form(to, text)).encode("ascii")
        resp = await self.request(
            "POST",
            self.messages_url,
            before_write=self.handover(track),
            data=body,
            headers={
                "Authorization": basic_auth(sc.account_sid, sc.auth_token.reveal()),
                "Content-Type": "application/x-www-form-urlencoded",
                "Accept": "application/json",
            },
        )
        doc = resp.json()
        if resp.status not in (200, 201) or not isinstance(doc, dict) or not doc.get("sid"):
            self._refused(resp, doc)
        segments = info.segments
        try:
            segments = int(doc.get("num_segments") or segments)
        except (TypeError, ValueError):
            pass
        log.info(
            "sms_sent", sender=self.name, kind="twilio", to=mask(to, self.config.logging.log_numbers),
            segments=segments, encoding=info.encoding, sid=doc["sid"], status=doc.get("status"),
        )
        return SendResult(sender=self.name, segments=segments, references=(str(doc["sid"]),), encoding=info.encoding)

    def _refused(self, resp: Response, doc: object) -> None:
        code = None
        words = ""
        if isinstance(doc, dict) and doc.get("code") is not None:
            code = str(doc["code"])
            words = ERROR_WORDS.get(code) or scrub(str(doc.get("message") or "")) or "see the Twilio console"
        if 200 <= resp.status < 300:
            # accepted, but we cannot tell which message: it may have gone out
            log.warning("gateway_answer_unreadable", sender=self.name, status=resp.status)
            raise UnknownSendError(f"Twilio {self.name!r}: HTTP {resp.status} without a message sid")
        if code in TEMPORARY_CODES and resp.status < 500:
            resp = Response(429, resp.headers, resp.body)
        self.fail(resp, code=code, words=words)
