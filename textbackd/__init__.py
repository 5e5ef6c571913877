"""textbackd: texts back the callers an on-premise PBX missed."""

__version__ = "0.1.0"
