"""Configuration: settings (defaults < TOML < environment), paths under
``$BILLING_HOME``, the metric catalogue; price-book parsing lives beside them."""

from __future__ import annotations

from .settings import (
    PROJECT_ROOT,
    SQL_DIR,
    MetricDef,
    Settings,
    WebhookEndpoint,
    load_settings,
    parse_date,
)

__all__ = [
    "PROJECT_ROOT",
    "SQL_DIR",
    "MetricDef",
    "Settings",
    "WebhookEndpoint",
    "load_settings",
    "parse_date",
]
