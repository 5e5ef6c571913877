"""``[pbx] kind = "freeswitch"``: the FreeSWITCH event socket (mod_event_socket, inbound mode).

``frames.py`` (the sans-I/O ESL parser), ``tracker.py`` (events → Calls, by a-leg),
``client.py`` (auth, subscription, ``show channels`` resync), ``replay_source.py``,
``replay_server.py`` (a built-in event socket for the demo and tests), ``checks.py`` (``doctor``).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from textbackd.core.checks import Check
    from textbackd.core.settings import Config, Secret, Section
    from textbackd.pbx.base import EventCallback, PbxClient, Timed, Tracker


class FreeswitchKind:
    name = "freeswitch"
    default_port = 8021

    def parse_secret(self, sec: Section) -> Secret:
        secret = sec.secret("password", "pbx.password")
        if sec.has("secret") or sec.has("secret_file"):
            raise sec.error("secret", 'FreeSWITCH uses "password" (event_socket.conf.xml)')
        return secret

    def describe(self, config: Config) -> str:
        p = config.pbx
        return (f"pbx: freeswitch at {p.host}:{p.port}, password "
                f"{'set (hidden)' if p.secret else 'not set'}, ping every {p.ping_interval:g}s")

    def make_tracker(self, config: Config) -> Tracker:
        from textbackd.pbx.freeswitch.tracker import FsTracker

        return FsTracker(config)

    def make_client(self, config: Config, on_event: EventCallback, clock: Callable[[], float]) -> PbxClient:
        from textbackd.pbx.freeswitch.client import FsClient

        return FsClient(config.pbx, on_event, clock=clock)

    def read_events(self, path: str | Path) -> Iterator[Timed]:
        from textbackd.pbx.freeswitch.replay_source import read_events

        return read_events(path)

    async def checks(self, config: Config, timeout: float) -> list[Check]:
        from textbackd.pbx.freeswitch.checks import checks

        return await checks(config, timeout)


KIND = FreeswitchKind()
