"""``kind = "modem"``: a GSM modem over AT commands in PDU mode.

``at.py`` (the sans-I/O AT engine), ``pdu.py`` (the PDU codec), ``serial_link.py``,
``sender.py`` (``ModemSender``), ``checks.py`` (``doctor`` and
``textbackd modem-info``), ``simulator.py`` (a modem on a pty for the demo and tests),
``config.py`` (the section).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from textbackd.senders.base import Gauge, secret_state

if TYPE_CHECKING:
    from textbackd.core.checks import Check
    from textbackd.core.settings import Config, Section
    from textbackd.senders.modem.config import ModemConfig
    from textbackd.senders.modem.sender import ModemSender
    from textbackd.senders.webhooks import WebhookContext


class ModemKind:
    name = "modem"
    needs_listener = False
    needs_http_secret = False
    gauges = (Gauge("modem_signal_dbm", "Modem signal strength", "signal_dbm"),)

    def parse_config(self, sec: Section, name: str) -> ModemConfig:
        from textbackd.senders.modem.config import parse

        return parse(sec, name)

    def build(self, sc: ModemConfig, config: Config) -> ModemSender:
        from textbackd.senders.modem.sender import ModemSender

        return ModemSender(sc, config)

    def describe(self, sc: ModemConfig) -> str:
        return f"{sc.device} at {sc.baudrate} baud, PIN {secret_state(sc.pin)}"

    def routes(self, ctx: WebhookContext) -> tuple:
        return ()  # replies and reports come over the serial line

    def webhook_urls(self, sc: ModemConfig, config: Config) -> dict[str, str]:
        return {}

    async def check(self, sc: ModemConfig, config: Config, timeout: float) -> Check:
        from textbackd.senders.modem.checks import check

        return await check(sc, config, timeout)


KIND = ModemKind()
