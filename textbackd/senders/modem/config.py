"""``kind = "modem"``: the section of a GSM modem sender."""

from __future__ import annotations

from dataclasses import dataclass, field

from textbackd.core.settings import Secret, Section, SenderConfig
from textbackd.senders.base import require


@dataclass(frozen=True, slots=True)
class ModemConfig(SenderConfig):
    device: str = ""
    baudrate: int = 115200
    pin: Secret = field(default_factory=lambda: Secret(""))
    status_reports: bool = True
    command_timeout: float = 10.0


def parse(sec: Section, name: str) -> ModemConfig:
    require(sec, "modem", "device")
    cfg = ModemConfig(
        name=name,
        kind="modem",
        device=sec.str("device"),
        baudrate=sec.int("baudrate", 115200, lo=300, hi=4_000_000),
        pin=sec.secret("pin", f"senders.{name}.pin"),
        status_reports=sec.bool("status_reports", True),
        command_timeout=sec.float("command_timeout", 10.0, lo=0.5, hi=300),
    )
    sec.done()
    return cfg
