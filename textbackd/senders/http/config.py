"""``kind = "http"``: the section of a gateway described entirely in the config."""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from textbackd.core.settings import Secret, Section
from textbackd.senders.base import GatewayConfig, parse_gateway, require


@dataclass(frozen=True, slots=True)
class HttpSenderConfig(GatewayConfig):
    username: str = ""
    password: Secret = field(default_factory=lambda: Secret(""))  # replaces {password} in headers and body
    method: str = "POST"
    headers: tuple[tuple[str, str], ...] = field(default=(), repr=False)  # may carry API keys
    body_format: str = "form"  # "form" | "json"
    body: tuple[tuple[str, str], ...] = ()  # field → template with {to} {text} {from}
    success_status: tuple[int, ...] = (200, 201, 202)
    message_id_path: str = ""  # dotted JSON path of the provider's message id


def _pairs(sec: Section, key: str) -> tuple[tuple[str, str], ...]:
    t = sec.table(key)
    out = tuple((k, t.str(k)) for k in list(t.data))
    t.done()
    return out


def parse(sec: Section, name: str) -> HttpSenderConfig:
    require(sec, "http", "url")
    cfg = HttpSenderConfig(
        name=name,
        kind="http",
        **parse_gateway(sec),
        username=sec.str("username"),
        password=sec.secret("password", f"senders.{name}.password"),
        method=sec.str("method", "POST", choices=("POST", "GET", "PUT")),
        headers=_pairs(sec, "headers"),
        body_format=sec.str("body_format", "form", choices=("form", "json")),
        body=_pairs(sec, "body"),
        success_status=tuple(sec._get("success_status", (list,), "a list of integers", [200, 201, 202], False)),
        message_id_path=sec.str("message_id_path"),
    )
    if not re.match(r"^https?://", cfg.url):
        raise sec.error("url", "must start with http:// or https://")
    if not cfg.body:
        raise sec.error("body", 'required for kind "http": a table of fields, e.g. to = "{to}", text = "{text}"')
    for i, code in enumerate(cfg.success_status):
        if not isinstance(code, int) or isinstance(code, bool) or not 100 <= code <= 599:
            raise sec.error(f"success_status[{i}]", "must be an HTTP status code")
    sec.done()
    return cfg
