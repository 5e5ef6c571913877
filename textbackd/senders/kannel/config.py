"""``kind = "kannel"``: the section of a Kannel smsbox sender."""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from textbackd.core.settings import Secret, Section
from textbackd.senders.base import GatewayConfig, parse_gateway, require


@dataclass(frozen=True, slots=True)
class KannelConfig(GatewayConfig):
    username: str = ""
    password: Secret = field(default_factory=lambda: Secret(""))
    smsc: str = ""


def parse(sec: Section, name: str) -> KannelConfig:
    require(sec, "kannel", "url", "username")
    cfg = KannelConfig(
        name=name,
        kind="kannel",
        **parse_gateway(sec),
        username=sec.str("username"),
        password=sec.secret("password", f"senders.{name}.password"),
        smsc=sec.str("smsc"),
    )
    if not re.match(r"^https?://", cfg.url):
        raise sec.error("url", "must start with http:// or https://")
    sec.done()
    return cfg
