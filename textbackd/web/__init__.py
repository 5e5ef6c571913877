"""The front desk in a browser (issue 12): Inbox, Missed calls, conversations, Figures, Status, Users.

An adapter like the PBX clients and the senders: it owns HTTP and nothing else. It reads through
``store/pages.py`` (one typed, cursor-paged query per page), acts through ``staff/actions.py`` and
``staff/accounts.py`` (the same functions as ``textbackd reply`` and ``textbackd user``, so the CLI,
the API and the page cannot disagree), and hears what changed from the daemon through a ``Hub``
(``web/live.py``), which it passes on to each open page as server-sent events.

Pieces::

    app.py      make_app(): the aiohttp application, the guard (sessions, CSRF, roles, headers)
    views.py    the handlers (thin: query, present, render; POST → staff action → redirect)
    present.py  rows in words (times, numbers, outcomes, decisions) for the templates
    charts.py   server-side SVG charts for Figures
    live.py     Hub: the daemon publishes, each /events stream listens
    server.py   WebServer: binds [web] listen (TLS when configured), the masked access log
    templates/  Jinja2, no logic beyond loops over prepared values
    static/     app.css, live.js and htmx (htmx.org 2.0.11 from npm, with its licence), no build step

The daemon (``daemon/service.py``) starts it when ``[web]`` is configured::

    app = make_app(store, config, host=facts, hub=hub, subapps={"/api/v1/": api_app})
    server = WebServer(app, config); await server.start(); ...; await server.stop()

``host`` is a ``Host`` (``app.py``): the daemon's health facts, PBX link and senders for Status, and
``wake_outbox()`` after a text is queued. ``subapps`` mounts other aiohttp applications under a
prefix (the JSON API of issue 14 at ``/api/v1/``): they bring their own authentication (API
tokens), so the front desk's session, CSRF and role checks leave their requests alone; they share
the security headers, the access log and the listening socket.
"""

from textbackd.web.app import Host, NoDaemon, make_app
from textbackd.web.live import Hub
from textbackd.web.server import WebServer

__all__ = ["make_app", "Host", "NoDaemon", "Hub", "WebServer"]
