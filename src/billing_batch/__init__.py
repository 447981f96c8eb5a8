"""billing-batch: usage metering and invoicing on a DuckLake.

The public API (everything else is internal and may change):
"""

from __future__ import annotations

from .config import MetricDef, Settings, load_settings
from .errors import (
    BillingError,
    ConfigError,
    IngestError,
    InputError,
    LakeError,
    LockedError,
    NotFoundError,
    PaymentActionRequiredError,
    PaymentDeclinedError,
    PaymentError,
    PaymentTransientError,
    PriceBookError,
    RenderError,
    StateError,
    StripeNotConfiguredError,
    SubscriptionError,
    UsageQueryError,
    WebhookError,
    WebhookVerificationError,
)
from .ingest import FileReport, IngestReport
from .ingest import ingest as ingest_logs
from .lake import Lake
from .sample import generate as generate_sample

__version__ = "0.1.0"

__all__ = [
    "BillingError",
    "ConfigError",
    "FileReport",
    "IngestError",
    "IngestReport",
    "InputError",
    "Lake",
    "LakeError",
    "LockedError",
    "MetricDef",
    "NotFoundError",
    "PaymentActionRequiredError",
    "PaymentDeclinedError",
    "PaymentError",
    "PaymentTransientError",
    "PriceBookError",
    "RenderError",
    "Settings",
    "StateError",
    "StripeNotConfiguredError",
    "SubscriptionError",
    "UsageQueryError",
    "WebhookError",
    "WebhookVerificationError",
    "__version__",
    "generate_sample",
    "ingest_logs",
    "load_settings",
]
