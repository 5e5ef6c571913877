"""Standard Webhooks signatures: ``v1,<base64 HMAC-SHA256 of "id.timestamp.body">`` under the ``whsec_`` key."""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets

from textbackd.core.settings import Secret
from textbackd.webhooks.config import SECRET_PREFIX, secret_key


def sign(key: bytes, msg_id: str, timestamp: int, body: bytes) -> str:
    mac = hmac.new(key, f"{msg_id}.{timestamp}.".encode() + body, hashlib.sha256).digest()
    return "v1," + base64.b64encode(mac).decode()


def signed_headers(secret: Secret, msg_id: str, timestamp: int, body: bytes) -> dict[str, str]:
    """``webhook-id``, ``webhook-timestamp`` (Unix seconds) and ``webhook-signature`` for one try."""
    return {
        "webhook-id": msg_id,
        "webhook-timestamp": str(timestamp),
        "webhook-signature": sign(secret_key(secret), msg_id, timestamp, body),
    }


def new_secret() -> str:
    """A fresh ``whsec_`` secret (32 random bytes) for a new endpoint."""
    return SECRET_PREFIX + base64.b64encode(secrets.token_bytes(32)).decode()
