"""The protocols every sender kind implements: the ``Sender`` that sends, and the ``SenderKind``
that tells the rest of the daemon about the kind (its config section, routes, checks, metrics).

A sender turns ``(to, text)`` into a ``SendResult`` or raises one of the
``SendError`` subclasses from ``textbackd.core.errors``:

* ``TemporarySendError`` (and ``SenderUnavailableError``): nothing was sent; the
  outbox retries later, possibly through the next sender;
* ``PermanentSendError``: this number/text will never go through; the outbox
  marks the text failed;
* ``UnknownSendError``: the request may have gone out; the outbox never retries
  it blindly.

Incoming texts and delivery reports go to an ``InboundSink`` given at start.

**The hand-over mark** (issue 18). ``send`` gets a ``SendTrack`` from the outbox and calls
``track.handing_over(part, total)`` just *before* writing the byte that is the point of no
return (a modem: the PDU and its Ctrl-Z; a gateway: the request, once connected), and
``track.accepted(part, ref)`` when the part was taken. Each call is on disk when it returns,
so after a crash the outbox knows which parts may have left. ``track.progress()`` says what an
earlier attempt of this text already sent: a resumed send goes out through the same sender,
with the same concatenation reference, and never sends those parts again. ``handing_over``
raises ``TemporarySendError`` when the mark cannot be written: then nothing may be written
either. A sender whose ``send`` takes no ``track`` is marked handed over before it is called
(a crash then leaves its text ``unknown``, the safe side).

A kind is one folder (``senders/<kind>/``) whose ``__init__`` exposes ``KIND``, an
object of this module's ``SenderKind`` protocol; ``senders/registry.py`` lists them.
The ``__init__`` stays cheap (no aiohttp, no serial): the sender and its routes are
imported when first built.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

from textbackd.core.model import DeliveryReport, IncomingText, SendProgress, SendResult
from textbackd.core.settings import SenderConfig

if TYPE_CHECKING:
    from textbackd.core.checks import Check
    from textbackd.core.settings import Config, Section


class InboundSink(Protocol):
    async def incoming(self, text: IncomingText) -> None: ...

    async def delivery_report(self, report: DeliveryReport) -> None: ...


class SendTrack(Protocol):
    """The outbox's side of one send (see the module docstring); every call is on disk when it returns."""

    def progress(self) -> SendProgress | None:
        """What earlier attempts of this text sent (None: nothing went out yet)."""

    def handing_over(self, part: int, total: int, *, concat_ref: int | None = None,
                     expected_ref: str | None = None) -> None:
        """Mark ``part`` (1-based) as leaving now; raises ``TemporarySendError`` if that cannot be recorded."""

    def accepted(self, part: int, ref: str) -> None:
        """The sender took ``part`` with this reference (TP-MR, provider id)."""


class MemoryTrack:
    """A ``SendTrack`` kept in memory: one text's attempts within one process (``textbackd send``)."""

    def __init__(self, sender: str = "") -> None:
        self.sender = sender
        self.total = 0
        self.concat_ref: int | None = None
        self.parts: dict[int, str | None] = {}  # part → ref (None: handed over, no answer yet)
        self.attempt: set[int] = set()  # parts handed over in the attempt under way

    def progress(self) -> SendProgress | None:
        if not self.parts:
            return None
        return SendProgress(
            self.sender, self.total, self.concat_ref,
            accepted=tuple((p, r) for p, r in sorted(self.parts.items()) if r is not None),
            in_doubt=tuple(p for p, r in sorted(self.parts.items()) if r is None),
        )

    def handing_over(self, part: int, total: int, *, concat_ref: int | None = None,
                     expected_ref: str | None = None) -> None:
        self.total, self.concat_ref = total, concat_ref
        self.parts[part] = None
        self.attempt.add(part)

    def accepted(self, part: int, ref: str) -> None:
        self.parts[part] = ref

    def refused(self) -> None:
        """The attempt ended with an error (temporary or permanent): its unanswered parts did not go out."""
        for p in self.attempt:
            if self.parts.get(p, "") is None:
                del self.parts[p]
        self.attempt.clear()


@runtime_checkable
class Sender(Protocol):
    name: str
    kind: str

    async def start(self, sink: InboundSink) -> None:
        """Open the device/session and begin delivering inbound events to ``sink``."""

    async def send(self, to: str, text: str, track: SendTrack | None = None) -> SendResult:
        """Send one text (split into linked segments as needed), marking each part on ``track``."""

    async def close(self) -> None:
        """Release the device/session. Idempotent."""

    def healthy(self) -> bool:
        """True when the sender believes a send would be attempted now."""

    def status(self) -> Mapping[str, Any]:
        """Facts for ``/healthz``, ``/metrics`` and the status page (signal, last error...)."""


class NullSink:
    """An ``InboundSink`` that drops everything (CLI one-shot sends)."""

    async def incoming(self, text: IncomingText) -> None:
        return None

    async def delivery_report(self, report: DeliveryReport) -> None:
        return None


Handler = Callable[[Any], Awaitable[Any]]  # aiohttp request → response


@dataclass(frozen=True, slots=True)
class Route:
    """One webhook a kind mounts on the HTTP listener (inbound texts, delivery reports)."""

    method: str
    path: str
    handler: Handler


@dataclass(frozen=True, slots=True)
class Gauge:
    """A per-sender gauge a kind exports: ``textbackd_<name>{sender}`` from ``status()[key]``."""

    name: str
    doc: str
    key: str


class SenderKind(Protocol):
    """What the daemon, the listener, ``check-config`` and ``doctor`` know of a sender kind."""

    name: str  # the ``kind = "..."`` of a [[senders]] table
    needs_listener: bool  # inbound texts / delivery reports come over HTTP
    needs_http_secret: bool  # its webhooks are protected by ``http.secret``
    gauges: Sequence[Gauge]

    def parse_config(self, sec: Section, name: str) -> SenderConfig:
        """Read the rest of a ``[[senders]]`` table (``name`` and ``kind`` are read); ``sec.done()`` included."""

    def build(self, sc: SenderConfig, config: Config) -> Sender:
        """The sender, not yet started."""

    def describe(self, sc: SenderConfig) -> str:
        """One line for ``check-config`` (secrets as set / not set)."""

    def routes(self, ctx: Any) -> Sequence[Route]:
        """The kind's webhooks, mounted by the listener; ``ctx`` is a ``senders.webhooks.WebhookContext``."""

    def webhook_urls(self, sc: SenderConfig, config: Config) -> Mapping[str, str]:
        """What an admin configures on the gateway (secrets shown as ``<http.secret>``)."""

    async def check(self, sc: SenderConfig, config: Config, timeout: float) -> Check:
        """``doctor``: can a text go out this way? Sends nothing."""


@dataclass(frozen=True, slots=True)
class GatewayConfig(SenderConfig):
    """The fields every HTTP gateway kind's section has; each gateway kind's config extends it."""

    url: str = ""
    timeout: float = 15.0
    from_: str = ""  # TOML key "from"

    @property
    def own_number(self) -> str:
        return self.from_


def parse_gateway(sec: Section) -> dict[str, Any]:
    """``url``, ``timeout`` and ``from`` of an HTTP gateway section, as keyword arguments."""
    return {
        "url": sec.str("url"),
        "timeout": sec.float("timeout", 15.0, lo=0.5, hi=300),
        "from_": sec.str("from"),
    }


def require(sec: Section, kind: str, *keys: str) -> None:
    """``sec.error(key, 'required for kind ...')`` for the first of ``keys`` the section lacks."""
    for k in keys:
        if not sec.has(k):
            raise sec.error(k, f'required for kind "{kind}"')


def secret_state(s: Any) -> str:
    return "set (hidden)" if s else "not set"


def unreachable(sc: SenderConfig, netloc: str, e: BaseException) -> Check:
    """``doctor``'s verdict for a gateway that did not answer."""
    from textbackd.core.checks import Check

    why = "no answer in time" if isinstance(e, TimeoutError) else type(e).__name__
    return Check(f"sender {sc.name}", False, f"{sc.kind} gateway {netloc} not reachable ({why})",
                 f"check url of sender {sc.name!r}, that the gateway runs, and DNS/firewall")
