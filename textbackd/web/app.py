"""The front desk's aiohttp application: ``make_app(store, config, host=..., hub=..., subapps=...)``
builds it from the guard (``guard.py``) and the routes (``views.py``); ``web/server.py`` serves it."""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping

import jinja2
from aiohttp import web

from textbackd.core.settings import Config, WebConfig
from textbackd.store.db import Store
from textbackd.web import views
from textbackd.web.guard import CTX, Ctx, Host, NoDaemon, _guard
from textbackd.web.live import Hub

__all__ = ["make_app", "Host", "NoDaemon"]


def make_app(
    store: Store,
    config: Config,
    *,
    host: Host | None = None,
    hub: Hub | None = None,
    clock: Callable[[], float] = time.time,
    subapps: Mapping[str, web.Application] | None = None,
    tls: bool | None = None,
) -> web.Application:
    """The front desk. ``subapps`` maps a prefix (``"/api/v1/"``) to an aiohttp application mounted there."""
    env = jinja2.Environment(loader=jinja2.PackageLoader("textbackd.web", "templates"),
                             autoescape=jinja2.select_autoescape(default=True), undefined=jinja2.StrictUndefined,
                             trim_blocks=True, lstrip_blocks=True)
    wc = config.web or WebConfig()
    ctx = Ctx(store=store, config=config, host=host or NoDaemon(), hub=hub or Hub(), clock=clock, env=env,
              tls=wc.tls if tls is None else tls,
              subapp_prefixes=tuple(p if p.endswith("/") else p + "/" for p in (subapps or {})))
    app = web.Application(middlewares=[_guard], client_max_size=256 * 1024)
    app[CTX] = ctx
    views.add_routes(app)
    for prefix, sub in (subapps or {}).items():
        app.add_subapp(prefix.rstrip("/"), sub)
    return app
