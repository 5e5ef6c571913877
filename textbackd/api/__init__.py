"""The JSON API under ``/api/v1/`` (issue 14): see ``app.py``."""
