"""billing-batch: usage metering and invoicing on a DuckLake.

The public API is what ``__all__`` lists (everything else is internal and may change):
ingest (``ingest_logs``), usage (``get_usage``, ``refresh_rollup``), pricing, invoices
(``create_invoice`` ... ``void_invoice``), subscriptions, payments (``pay_invoice``),
webhooks (``deliver_webhooks``, ``verify_webhook``), the HTTP client (``BillingClient``),
the analysts' sandboxed lake (``analyst_connection``).
"""

from __future__ import annotations

from ._core.errors import (
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
from .client import BillingClient
from .config.settings import MetricDef, Settings, load_settings
from .documents.render import RenderResult, render_many, render_pdf, write_invoice_files
from .ingest import FileReport, IngestReport
from .ingest import ingest as ingest_logs
from .invoicing.service import (
    Invoice,
    Line,
    create_invoice,
    create_invoices,
    explain_invoice,
    finalize_invoice,
    get_invoice,
    list_invoices,
    mark_overdue,
    void_invoice,
)
from .nightly.steps import RunSummary, default_run_date
from .payments.charging import (
    PaymentAttempt,
    PaymentResult,
    pay_invoice,
    pay_invoices,
    retry_due_payments,
)
from .rating.prices import Account, Charge, Plan, PriceBook, load_price_book
from .storage.analyst import AnalystConnection, analyst_connection
from .storage.lake import Lake
from .storage.maintenance import expire_lake_snapshots
from .storage.mirror import mirror_to_lake
from .subscriptions.service import (
    Subscription,
    cancel_subscription,
    change_subscription,
    create_subscription,
    show_subscription,
)
from .usage.queries import (
    MetricUsage,
    RollupReport,
    daily_quantities,
    get_usage,
    period_quantities,
    refresh_rollup,
)
from .usage.sample import generate as generate_sample
from .webhooks.delivery import DeliveryReport
from .webhooks.delivery import deliver as deliver_webhooks
from .webhooks.delivery import sign as sign_webhook
from .webhooks.delivery import verify as verify_webhook
from .webhooks.outbox import EVENT_TYPES, record_usage_events

__version__ = "0.1.0"

__all__ = [
    "Account",
    "analyst_connection",
    "AnalystConnection",
    "BillingClient",
    "BillingError",
    "cancel_subscription",
    "change_subscription",
    "Charge",
    "ConfigError",
    "create_invoice",
    "create_invoices",
    "create_subscription",
    "daily_quantities",
    "default_run_date",
    "deliver_webhooks",
    "DeliveryReport",
    "EVENT_TYPES",
    "expire_lake_snapshots",
    "explain_invoice",
    "FileReport",
    "finalize_invoice",
    "generate_sample",
    "get_invoice",
    "get_usage",
    "ingest_logs",
    "IngestError",
    "IngestReport",
    "InputError",
    "Invoice",
    "Lake",
    "LakeError",
    "Line",
    "list_invoices",
    "load_price_book",
    "load_settings",
    "LockedError",
    "mark_overdue",
    "MetricDef",
    "MetricUsage",
    "mirror_to_lake",
    "NotFoundError",
    "pay_invoice",
    "pay_invoices",
    "PaymentActionRequiredError",
    "PaymentAttempt",
    "PaymentDeclinedError",
    "PaymentError",
    "PaymentResult",
    "PaymentTransientError",
    "period_quantities",
    "Plan",
    "PriceBook",
    "PriceBookError",
    "record_usage_events",
    "refresh_rollup",
    "render_many",
    "render_pdf",
    "RenderError",
    "RenderResult",
    "retry_due_payments",
    "RollupReport",
    "RunSummary",
    "Settings",
    "show_subscription",
    "sign_webhook",
    "StateError",
    "StripeNotConfiguredError",
    "Subscription",
    "SubscriptionError",
    "UsageQueryError",
    "verify_webhook",
    "void_invoice",
    "WebhookError",
    "WebhookVerificationError",
    "write_invoice_files",
    "__version__",
]
