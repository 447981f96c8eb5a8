"""Configuration: settings (defaults < TOML < environment; paths under
``$BILLING_HOME``; the nightly schedule) in :mod:`.settings`, the metric catalogue in
:mod:`.metrics`, price-book parsing and validation in :mod:`.price_book`."""

from __future__ import annotations

from .metrics import DEFAULT_METRICS, Aggregation, MetricDef
from .settings import (
    PROJECT_ROOT,
    SQL_DIR,
    Settings,
    WebhookEndpoint,
    load_settings,
    parse_date,
)

__all__ = [
    "DEFAULT_METRICS",
    "PROJECT_ROOT",
    "SQL_DIR",
    "Aggregation",
    "MetricDef",
    "Settings",
    "WebhookEndpoint",
    "load_settings",
    "parse_date",
]
