"""``[pbx] kind = "asterisk"`` (and FreePBX): the Asterisk Manager Interface.

``frames.py`` (the sans-I/O AMI parser), ``tracker.py`` (events → Calls, by Linkedid),
``client.py`` (login, events, ``CoreShowChannels`` resync), ``replay_source.py`` (captures
with their ``.timing`` sidecar), ``replay_server.py`` (a built-in AMI for the demo and
tests), ``checks.py`` (``doctor``).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from textbackd.core.checks import Check
    from textbackd.core.settings import Config, Secret, Section
    from textbackd.pbx.base import EventCallback, PbxClient, Timed, Tracker


class AsteriskKind:
    name = "asterisk"
    default_port = 5038

    def parse_secret(self, sec: Section) -> Secret:
        secret = sec.secret("secret", "pbx.secret")
        if sec.has("password") or sec.has("password_file"):
            raise sec.error("password", 'Asterisk logins use "secret"')
        return secret

    def describe(self, config: Config) -> str:
        p = config.pbx
        return (f"pbx: asterisk at {p.host}:{p.port} as {p.username!r}, secret "
                f"{'set (hidden)' if p.secret else 'not set'}, ping every {p.ping_interval:g}s")

    def make_tracker(self, config: Config) -> Tracker:
        from textbackd.pbx.asterisk.tracker import AmiTracker

        return AmiTracker(config)

    def make_client(self, config: Config, on_event: EventCallback, clock: Callable[[], float]) -> PbxClient:
        from textbackd.pbx.asterisk.client import AmiClient
        from textbackd.pbx.asterisk.tracker import wants_frame

        # frames the tracker can never use (most VarSet/Newexten/CEL) are dropped undecoded
        return AmiClient(config.pbx, on_event, clock=clock, select=wants_frame)

    def read_events(self, path: str | Path) -> Iterator[Timed]:
        from textbackd.pbx.asterisk.replay_source import read_events

        return read_events(path, tracked_only=True)  # replay: decode only what the tracker reads

    async def checks(self, config: Config, timeout: float) -> list[Check]:
        from textbackd.pbx.asterisk.checks import checks

        return await checks(config, timeout)


KIND = AsteriskKind()
