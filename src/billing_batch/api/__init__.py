"""The HTTP API (FastAPI) over the library: ``create_app(settings)``; served by
``billing-batch serve-api``. See ``docs/api.md``."""

from __future__ import annotations

from .app import create_app

__all__ = ["create_app"]
