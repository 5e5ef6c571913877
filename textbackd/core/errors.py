"""One error hierarchy for the whole daemon.

Every error textbackd raises on purpose is a ``TextbackError``. Adapters map
foreign errors (``OSError``, ``aiohttp.ClientError``, ``serial.SerialException``,
``sqlite3.Error``...) to these at their boundary, so callers above an adapter
only ever catch our types. Like aiosmtplib, the connection errors also subclass
the stdlib ``ConnectionError`` so generic code still recognises them.

Messages never contain secrets: adapters build them from host, port, status
codes and provider error codes only.
"""

from __future__ import annotations


class TextbackError(Exception):
    """Base of every error textbackd raises on purpose."""


class ConfigError(TextbackError):
    """The configuration is unusable. ``str()`` names the file, key path and reason."""

    def __init__(self, reason: str, *, file: str | None = None, key: str | None = None) -> None:
        self.file = file
        self.key = key
        self.reason = reason
        where = ": ".join(p for p in (file, key) if p)
        super().__init__(f"{where}: {reason}" if where else reason)


class StoreError(TextbackError):
    """The SQLite store cannot be opened, migrated or written."""


# --- PBX side -------------------------------------------------------------------------


class PbxError(TextbackError):
    """Anything that went wrong talking to the PBX."""


class PbxProtocolError(PbxError):
    """The PBX sent bytes that do not follow the protocol (a frame we cannot parse)."""


class PbxAuthError(PbxError):
    """The PBX refused our login. Retrying with the same secret will not help quickly."""


class PbxConnectionError(PbxError, ConnectionError):
    """The link to the PBX could not be opened, or was lost, or stopped answering."""


# --- Sending --------------------------------------------------------------------------


class SendError(TextbackError):
    """A text could not be handed to a sender.

    ``code`` is the provider's or modem's own error code when there is one
    (``"21211"``, ``"CMS 38"``), ``retry_after`` seconds when the provider asked.
    """

    def __init__(self, message: str, *, code: str | None = None, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.retry_after = retry_after


class TemporarySendError(SendError):
    """Try again later (network down, 5xx, 429, modem busy, no signal)."""


class PermanentSendError(SendError):
    """Retrying will not help (invalid number, barred, rejected by the provider)."""


class UnknownSendError(SendError):
    """The send may or may not have happened (timeout after the request left).

    The outbox never retries these blindly: it marks the message ``unknown``.
    """


class SenderUnavailableError(TemporarySendError):
    """The sender is down (modem unplugged, gateway unreachable) before anything was sent."""


class ModemError(TextbackError):
    """The modem answered an AT command with an error or not at all."""


class EmailError(TextbackError):
    """Mail to staff could not be delivered (queued and retried)."""
