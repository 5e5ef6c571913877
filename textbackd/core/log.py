"""structlog set-up: key=value on a terminal, JSON lines under systemd.

Adapters log with ``structlog.get_logger(__name__)``. Phone numbers go through
``numbers.mask`` (see ``[logging] log_numbers``); secrets are ``config.Secret``
objects that never print their value, and ``_redact`` drops any event key that
looks like a secret as a last line of defence.
"""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Mapping
from typing import Any

import structlog

_SECRET_KEYS = ("secret", "password", "auth_token", "token", "pin", "authorization")


def under_systemd(env: Mapping[str, str] | None = None) -> bool:
    env = os.environ if env is None else env
    return bool(env.get("JOURNAL_STREAM") or env.get("INVOCATION_ID"))


def _redact(_logger: Any, _name: str, event: dict[str, Any]) -> dict[str, Any]:
    for k in list(event):
        if any(s in k.lower() for s in _SECRET_KEYS):
            event[k] = "********"
    return event


class _CurrentStderr:
    """Writes to whatever ``sys.stderr`` is now (it can be replaced after set-up)."""

    def write(self, s: str) -> int:
        return sys.stderr.write(s)

    def flush(self) -> None:
        sys.stderr.flush()

    def isatty(self) -> bool:
        return sys.stderr.isatty()


def setup(level: str = "info", fmt: str = "auto", stream: Any = None) -> None:
    """Configure structlog and the stdlib root logger once per process."""
    if stream is None or stream is sys.stderr:
        stream = _CurrentStderr()
    if fmt == "auto":
        fmt = "json" if under_systemd() or not stream.isatty() else "console"
    lvl = getattr(logging, level.upper(), logging.INFO)
    shared = [
        structlog.contextvars.merge_contextvars,
        structlog.processors.add_log_level,
        _redact,
    ]
    if fmt == "json":
        # journald adds its own timestamp, but JSON lines are also read from files.
        processors = [
            *shared,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            structlog.processors.format_exc_info,
            structlog.processors.JSONRenderer(),
        ]
    else:
        processors = [
            *shared,
            structlog.processors.TimeStamper(fmt="%H:%M:%S", utc=False),
            structlog.dev.ConsoleRenderer(colors=stream.isatty()),
        ]
    structlog.configure(
        processors=processors,
        wrapper_class=structlog.make_filtering_bound_logger(lvl),
        logger_factory=structlog.PrintLoggerFactory(file=stream),
        cache_logger_on_first_use=False,
    )
    logging.basicConfig(level=max(lvl, logging.WARNING), stream=sys.stderr, format="%(levelname)s %(name)s: %(message)s")
