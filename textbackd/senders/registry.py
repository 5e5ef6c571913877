"""The sender kinds, by name. Adding a kind is one folder under ``senders/`` and one line here.

``register(kind)`` adds one at run time (a test does, from outside the package).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from textbackd.core.errors import ConfigError
from textbackd.senders import http, kannel, modem, twilio
from textbackd.senders.base import Sender, SenderKind

if TYPE_CHECKING:
    from textbackd.core.settings import Config

_KINDS: dict[str, SenderKind] = {}


def register(kind: SenderKind) -> SenderKind:
    _KINDS[kind.name] = kind
    return kind


def unregister(name: str) -> None:
    _KINDS.pop(name, None)


for _k in (modem.KIND, kannel.KIND, twilio.KIND, http.KIND):
    register(_k)


def names() -> tuple[str, ...]:
    return tuple(_KINDS)


def get(name: str) -> SenderKind:
    return _KINDS[name]


def all_kinds() -> tuple[SenderKind, ...]:
    return tuple(_KINDS.values())


def build_sender(name: str, config: Config) -> Sender:
    """The configured sender ``name``, not yet started."""
    try:
        sc = config.sender(name)
    except KeyError:
        known = ", ".join(s.name for s in config.senders) or "none configured"
        raise ConfigError(f"no sender named {name!r} (senders: {known})", file=config.source) from None
    return get(sc.kind).build(sc, config)
