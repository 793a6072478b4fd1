"""The Flask HTTP API: `create_app(settings=None)`; routes are thin over the tool functions."""

from api.app import create_app

__all__ = ["create_app"]
