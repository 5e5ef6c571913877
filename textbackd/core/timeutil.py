"""The date helpers, once: the store keeps UTC seconds since the epoch, the rest of the house
speaks aware ``datetime``s. No clock is read here."""

from __future__ import annotations

from datetime import datetime, timezone


def iso(ts: datetime) -> str:
    """ISO 8601 in UTC with milliseconds and ``Z`` (``replay``, the API and webhooks)."""
    return ts.astimezone(timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def utc_from_epoch(epoch: float) -> datetime:
    return datetime.fromtimestamp(epoch, tz=timezone.utc)


def to_dt(ts: float | None) -> datetime | None:
    """A stored time as an aware UTC ``datetime`` (None stays None)."""
    return None if ts is None else datetime.fromtimestamp(ts, tz=timezone.utc)


def to_ts(dt: datetime | float | None) -> float | None:
    """An aware ``datetime`` (or seconds) as stored seconds (None stays None)."""
    if dt is None:
        return None
    if isinstance(dt, datetime):
        return dt.timestamp()
    return float(dt)


def aware(ts: datetime) -> datetime:
    """A naive ``datetime`` read as UTC; an aware one unchanged."""
    return ts if ts.tzinfo is not None else ts.replace(tzinfo=timezone.utc)
