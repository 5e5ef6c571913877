"""Kannel's smsbox ``sendsms`` interface (``kind = "kannel"``).

One GET to the configured ``url`` (``http://127.0.0.1:13013/cgi-bin/sendsms``)
with ``username``, ``password``, ``to``, ``text``, ``charset=UTF-8`` and, when
set, ``from`` and ``smsc``. Text outside the GSM 03.38 alphabet goes with
``coding=2`` (UCS-2). Kannel splits long texts itself (``concatenation = true``
in its sendsms-user group).

Delivery reports: when ``http.secret`` is set, each text gets our own id and
``dlr-mask=31`` with a ``dlr-url`` back to the listener
(``{public_url}/kannel/{sender}/dlr?ref={id}&sig={token}&type=%d``), the
token an HMAC of the id under ``http.secret``. Kannel 1.4 does not return its
own message id, so ``SendResult.references`` is ``(our id,)`` and the delivery
reports carry the same id. Replies come in through ``sms-service`` (see
``textbackd.listener``).
"""

from __future__ import annotations

import uuid
from urllib.parse import quote, urlencode

import structlog
from yarl import URL

from textbackd.core.errors import PermanentSendError
from textbackd.core.model import DeliveryReport, SendResult
from textbackd.core.numbers import mask
from textbackd.core.sms import analyze
from textbackd.senders.base import SendTrack
from textbackd.senders.gateway import HttpGateway, dlr_token, scrub

log = structlog.get_logger(__name__)

DLR_MASK = 31  # 1 delivered, 2 failed, 4 buffered, 8 accepted by the SMSC, 16 rejected by the SMSC

# Kannel's %d: type → (delivered, final, words)
DLR_TYPES = {
    1: (True, True, "delivered to the phone"),
    2: (False, True, "delivery failed"),
    4: (False, False, "buffered by the SMSC"),
    8: (False, False, "accepted by the SMSC"),
    16: (False, True, "rejected by the SMSC"),
}


def delivery_report(sender: str, ref: str, dlr_type: int, at, detail: str = "") -> DeliveryReport:
    delivered, final, words = DLR_TYPES.get(dlr_type, (False, False, f"Kannel report type {dlr_type}"))
    return DeliveryReport(
        sender=sender,
        reference=ref,
        delivered=delivered,
        final=final,
        at=at,
        detail=f"{words}{': ' + detail if detail else ''}",
    )


class KannelSender(HttpGateway):
    label = "Kannel"

    def dlr_url(self, ref: str) -> str | None:
        secret = self.config.http.secret.reveal()
        if not secret:
            return None
        token = dlr_token(secret, self.name, ref)
        return (
            f"{self.config.http.base_url}/kannel/{quote(self.name)}/dlr"
            f"?ref={ref}&sig={token}&type=%d&smsc=%i&ts=%T"
        )

    def params(self, to: str, text: str, ref: str) -> list[tuple[str, str]]:
        sc = self.sender_config
        p = [("username", sc.username), ("password", sc.password.reveal()), ("to", to), ("text", text)]
        if sc.from_:
            p.append(("from", sc.from_))
        if sc.smsc:
            p.append(("smsc", sc.smsc))
        p.append(("charset", "UTF-8"))
        if analyze(text).encoding == "ucs2":
            p.append(("coding", "2"))
        url = self.dlr_url(ref)
        if url:
            p += [("dlr-mask", str(DLR_MASK)), ("dlr-url", url)]
        return p

    async def send(self, to: str, text: str, track: SendTrack | None = None) -> SendResult:
        info = analyze(text)
        ref = uuid.uuid4().hex
        query = urlencode(self.params(to, text, ref), quote_via=quote)
        base = self.sender_config.url
        url = URL(f"{base}{'&' if '?' in base else '?'}{query}", encoded=True)
        # our id is what Kannel's delivery report will carry: a report can settle a text left in doubt
        resp = await self.request("GET", url, before_write=self.handover(track, ref))
        if not 200 <= resp.status < 300:
            # Kannel answers in plain text: "Sender missing and no global set, rejected",
            # "Authorization failed for sendsms" (403), "Not routable. Do not try again." (403) ...
            if resp.status == 403 and "authoriz" not in resp.text.lower():
                log.warning("gateway_rejected", sender=self.name, status=resp.status)
                raise PermanentSendError(f"Kannel {self.name!r} HTTP 403: {scrub(resp.text)}")
            self.fail(resp)
        log.info(
            "sms_sent", sender=self.name, kind="kannel", to=mask(to, self.config.logging.log_numbers),
            segments=info.segments, encoding=info.encoding, ref=ref, answer=resp.text.strip()[:40],
        )
        return SendResult(sender=self.name, segments=info.segments, references=(ref,), encoding=info.encoding)
