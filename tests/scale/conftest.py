"""Fixtures of the ``scale`` tests: a throwaway PostgreSQL (tests/postgres_harness.py) and
homes whose lake catalog and state live there."""

from __future__ import annotations

from tests.postgres_harness import pg_database, pg_server

__all__ = ["pg_database", "pg_server"]
