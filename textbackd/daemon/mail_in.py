"""Staff answers by e-mail: a small SMTP listener (aiosmtpd) that turns a reply into a text.

Set ``[email] receive_listen = "127.0.0.1:8026"`` and route the Reply-To
addresses of textbackd's mails (``<from-local>+r<token>@<reply_domain>``) from
the office mail server to that address (README: "Replies, staff e-mail and the
owner's numbers"). The listener then

* refuses ``MAIL FROM`` unless it is one of the staff addresses in ``[email] to``
  (and refuses the message if its ``From:`` header is not one either);
* refuses ``RCPT TO`` unless the token names a conversation textbackd mailed
  about (``notify.find_conversation``);
* takes the first lines of the plain-text body, above the quoted original
  (``> …``, "On … wrote:", "-----Original Message-----", an Outlook header
  block, a ``-- `` signature, "Sent from my …"), and queues them as a
  ``kind = "staff"`` text through ``staff.actions.send_text`` (opted-out numbers
  are refused, so the sender's server bounces the mail with the reason).

Every refusal is an SMTP 5xx with a short reason, so staff get a bounce that
says what went wrong instead of silence.
"""

from __future__ import annotations

import asyncio
import html
import re
import time
from collections.abc import Callable
from email import policy
from email.message import EmailMessage
from email.parser import BytesParser
from email.utils import getaddresses, parseaddr
from typing import Any

import structlog

from textbackd.core.errors import TextbackError
from textbackd.core.numbers import mask
from textbackd.core.settings import Config
from textbackd.daemon.notify import find_conversation
from textbackd.staff.actions import queue_staff_text
from textbackd.store.db import Store

log = structlog.get_logger(__name__)

MAX_MAIL_BYTES = 512 * 1024
_RCPT = re.compile(r"\+r([0-9a-f]{16})@", re.IGNORECASE)
_QUOTE_HEAD = (
    re.compile(r"^-{2,}\s*original message\s*-{2,}", re.I),
    re.compile(r"^_{8,}$"),
    re.compile(r"^(from|von|de|sent|envoyé|gesendet):\s", re.I),
    re.compile(r"^sent from my ", re.I),
    re.compile(r"^get outlook for ", re.I),
)
_ON_WROTE = re.compile(r"^(on|le|am|el)\s.*(wrote|écrit|schrieb|escribió)\s*:\s*$", re.I | re.S)


def _token(address: str) -> str | None:
    m = _RCPT.search(address)
    return m.group(1).lower() if m else None


def _plain_body(msg: EmailMessage) -> str:
    part = msg.get_body(preferencelist=("plain", "html"))
    if part is None:
        return ""
    try:
        content = part.get_content()
    except (LookupError, UnicodeError):
        content = part.get_payload(decode=True).decode("utf-8", "replace")
    if part.get_content_type() == "text/html":
        content = re.sub(r"(?is)<(script|style|blockquote).*?</\1>", "", content)
        content = re.sub(r"(?i)<br\s*/?>|</p>|</div>", "\n", content)
        content = html.unescape(re.sub(r"<[^>]+>", "", content))
    return content


def answer_text(body: str) -> str:
    """The staff member's own words: the lines above the quoted original, joined into one text."""
    lines = body.replace("\r\n", "\n").split("\n")
    kept: list[str] = []
    for i, raw in enumerate(lines):
        line = raw.strip()
        if line.startswith(">") or raw.rstrip() == "--" or raw == "-- ":
            break
        if any(p.match(line) for p in _QUOTE_HEAD):
            break
        # "On Tue, 24 Nov 2026 at 15:10, textbackd <...> wrote:" may be wrapped over two or three lines
        if re.match(r"^(on|le|am|el)\s", line, re.I) and any(
            _ON_WROTE.match(" ".join(x.strip() for x in lines[i : i + k])) for k in (1, 2, 3)
        ):
            break
        kept.append(line)
    return " ".join(" ".join(kept).split())


class StaffMailHandler:
    """aiosmtpd handler: staff answers in, staff texts out."""

    def __init__(self, store: Store, config: Config, *, clock: Callable[[], float] = time.time,
                 wake_outbox: Callable[[], None] = lambda: None) -> None:
        self.store = store
        self.config = config
        self.clock = clock
        self.wake_outbox = wake_outbox
        self.staff = {a.strip().lower() for a in config.email.to}
        self.accepted = 0

    def _is_staff(self, address: str) -> bool:
        return parseaddr(address)[1].lower() in self.staff

    async def handle_MAIL(self, server: Any, session: Any, envelope: Any, address: str, mail_options: list) -> str:
        if not self._is_staff(address):
            log.warning("mail_in_refused_sender", peer=str(session.peer[0]) if session.peer else None)
            return "550 5.7.1 Only staff addresses may answer customers"
        envelope.mail_from = address
        envelope.mail_options.extend(mail_options)
        return "250 OK"

    async def handle_RCPT(self, server: Any, session: Any, envelope: Any, address: str, rcpt_options: list) -> str:
        token = _token(address)
        if token is None or find_conversation(self.store, token, now=self.clock()) is None:
            return "550 5.1.1 No such conversation: reply to a textbackd e-mail"
        envelope.rcpt_tos.append(address)
        envelope.rcpt_options.extend(rcpt_options)
        return "250 OK"

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        msg = BytesParser(policy=policy.default).parsebytes(envelope.original_content or envelope.content)
        senders = [a for _, a in getaddresses(msg.get_all("From", []))]
        if not senders or not all(a.lower() in self.staff for a in senders):
            return "550 5.7.1 The From: header is not a staff address"
        text = answer_text(_plain_body(msg))
        if not text:
            return "550 5.6.0 No text found above the quoted message"
        now = self.clock()
        queued = 0
        for rcpt in envelope.rcpt_tos:
            conv = find_conversation(self.store, _token(rcpt) or "", now=now)
            if conv is None:
                continue
            number, _ = conv
            try:
                queue_staff_text(self.store, self.config, number, text, now=now, source="mail",
                                 actor=f"mail:{senders[0].lower()}")
            except TextbackError as e:
                log.info("mail_in_refused", to=mask(number, self.config.logging.log_numbers), reason=str(e))
                return f"550 5.7.1 Not sent: {str(e)[:200]}"
            queued += 1
        if not queued:
            return "550 5.1.1 No such conversation"
        self.accepted += queued
        self.wake_outbox()
        return "250 OK: the text is queued"


class MailIn:
    """The SMTP listener on ``[email] receive_listen``, run in the daemon's event loop."""

    def __init__(self, store: Store, config: Config, *, clock: Callable[[], float] = time.time,
                 wake_outbox: Callable[[], None] = lambda: None) -> None:
        self.config = config
        self.handler = StaffMailHandler(store, config, clock=clock, wake_outbox=wake_outbox)
        self.server: asyncio.base_events.Server | None = None

    @property
    def address(self) -> tuple[str, int]:
        host, _, port = self.config.email.receive_listen.rpartition(":")
        return host.strip("[]") or "127.0.0.1", int(port)

    async def start(self) -> None:
        from aiosmtpd.smtp import SMTP

        host, port = self.address
        loop = asyncio.get_running_loop()
        try:
            self.server = await loop.create_server(
                lambda: SMTP(self.handler, hostname="textbackd", data_size_limit=MAX_MAIL_BYTES,
                             ident="textbackd staff replies"),
                host=host, port=port,
            )
        except OSError as e:
            raise TextbackError(f"email.receive_listen {host}:{port}: cannot listen: {e.strerror}") from None
        log.info("mail_in_listening", host=host, port=port)

    async def stop(self) -> None:
        if self.server is not None:
            self.server.close()
            await self.server.wait_closed()
            self.server = None


__all__ = ["MailIn", "StaffMailHandler", "answer_text"]
