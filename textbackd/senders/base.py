"""The protocol every modem and HTTP gateway implements.

A sender turns ``(to, text)`` into a ``SendResult`` or raises one of the
``SendError`` subclasses from ``textbackd.errors``:

* ``TemporarySendError`` (and ``SenderUnavailableError``): nothing was sent; the
  outbox retries later, possibly through the next sender;
* ``PermanentSendError``: this number/text will never go through; the outbox
  marks the text failed;
* ``UnknownSendError``: the request may have gone out; the outbox never retries
  it blindly.

Incoming texts and delivery reports go to an ``InboundSink`` given at start.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Protocol, runtime_checkable

from textbackd.core.model import DeliveryReport, IncomingText, SendResult

if TYPE_CHECKING:
    from textbackd.config import Config


class InboundSink(Protocol):
    async def incoming(self, text: IncomingText) -> None: ...

    async def delivery_report(self, report: DeliveryReport) -> None: ...


@runtime_checkable
class Sender(Protocol):
    name: str
    kind: str

    async def start(self, sink: InboundSink) -> None:
        """Open the device/session and begin delivering inbound events to ``sink``."""

    async def send(self, to: str, text: str) -> SendResult:
        """Send one text (split into linked segments as needed)."""

    async def close(self) -> None:
        """Release the device/session. Idempotent."""

    def healthy(self) -> bool:
        """True when the sender believes a send would be attempted now."""


class NullSink:
    """An ``InboundSink`` that drops everything (CLI one-shot sends)."""

    async def incoming(self, text: IncomingText) -> None:
        return None

    async def delivery_report(self, report: DeliveryReport) -> None:
        return None


def build_sender(name: str, config: Config) -> Sender:
    """The configured sender ``name``, not yet started.

    Every sender class takes ``(sender_config, config)``.
    """
    from textbackd.core.errors import ConfigError

    try:
        sc = config.sender(name)
    except KeyError:
        known = ", ".join(s.name for s in config.senders) or "none configured"
        raise ConfigError(f"no sender named {name!r} (senders: {known})", file=config.source) from None
    if sc.kind == "modem":
        from textbackd.senders.modem.sender import ModemSender as cls
    elif sc.kind == "kannel":
        from textbackd.senders.kannel.sender import KannelSender as cls
    elif sc.kind == "twilio":
        from textbackd.senders.twilio.sender import TwilioSender as cls
    else:
        from textbackd.senders.http.sender import HttpSender as cls
    return cls(sc, config)
