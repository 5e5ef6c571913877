"""``kind = "twilio"``: the section of a Twilio Programmable Messaging sender."""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from textbackd.core.settings import Secret, Section
from textbackd.senders.base import GatewayConfig, parse_gateway, require


@dataclass(frozen=True, slots=True)
class TwilioConfig(GatewayConfig):
    account_sid: str = ""
    auth_token: Secret = field(default_factory=lambda: Secret(""))
    messaging_service_sid: str = ""
    api_base: str = "https://api.twilio.com"


def parse(sec: Section, name: str) -> TwilioConfig:
    require(sec, "twilio", "account_sid")
    cfg = TwilioConfig(
        name=name,
        kind="twilio",
        **parse_gateway(sec),
        account_sid=sec.str("account_sid"),
        auth_token=sec.secret("auth_token", f"senders.{name}.auth_token", required=True),
        messaging_service_sid=sec.str("messaging_service_sid"),
        api_base=sec.str("api_base", "https://api.twilio.com"),
    )
    if not (cfg.from_ or cfg.messaging_service_sid):
        raise sec.error("from", 'required for kind "twilio" (or messaging_service_sid)')
    if not re.match(r"^https?://", cfg.url or cfg.api_base):
        raise sec.error("url", "must start with http:// or https://")
    sec.done()
    return cfg
