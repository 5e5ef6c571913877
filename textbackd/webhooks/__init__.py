"""Webhooks out: every missed call, text and reply, signed (Standard Webhooks), in order, without loss.

``store/events.py`` writes an event (and one delivery row per endpoint that wants it) in the same
transaction as the change it describes; ``delivery.py`` posts each endpoint's queue on its own
worker; ``config.py`` reads ``[[webhooks]]``; ``signing.py`` signs. The versioned schema of each event
type is the ``webhooks`` section of the API's OpenAPI document (``api/openapi.py``).
"""
