"""The PBX kinds, by name. Adding a kind is one folder under ``pbx/`` and one line here.

``register(kind)`` adds one at run time (a test does, from outside the package).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from textbackd.pbx import asterisk, freeswitch
from textbackd.pbx.base import PbxKind, Tracker

if TYPE_CHECKING:
    from textbackd.core.settings import Config

_KINDS: dict[str, PbxKind] = {}


def register(kind: PbxKind) -> PbxKind:
    _KINDS[kind.name] = kind
    return kind


def unregister(name: str) -> None:
    _KINDS.pop(name, None)


for _k in (asterisk.KIND, freeswitch.KIND):
    register(_k)


def names() -> tuple[str, ...]:
    return tuple(_KINDS)


def get(name: str) -> PbxKind:
    return _KINDS[name]


def make_tracker(config: Config) -> Tracker:
    """The tracker of the configured kind."""
    return get(config.pbx.kind).make_tracker(config)
