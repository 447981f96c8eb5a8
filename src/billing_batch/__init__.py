"""billing-batch: usage metering and invoicing on a DuckLake.

The public API is what ``__all__`` lists (everything else is internal and may change):
ingest (``ingest_logs``), usage (``get_usage``, ``refresh_rollup``), pricing, invoices
(``create_invoice`` ... ``void_invoice``), the audit, subscriptions, payments
(``pay_invoice``), webhooks (``deliver_webhooks``, ``verify_webhook``), the HTTP client
(``BillingClient``), the analysts' sandboxed lake (``analyst_connection``).

Names are imported on first use (module ``__getattr__``), so that ``import
billing_batch.client`` (an HTTP SDK) loads httpx and nothing heavy: no DuckDB, Stripe,
WeasyPrint or Prefect until something asks for them.
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

#: public name -> (module under billing_batch, attribute)
_EXPORTS: dict[str, tuple[str, str]] = {
    "Account": ("rating.plans", "Account"),
    "analyst_connection": ("storage.analyst", "analyst_connection"),
    "AnalystConnection": ("storage.analyst", "AnalystConnection"),
    "audit": ("invoicing.audit", "audit"),
    "AuditReport": ("invoicing.audit", "AuditReport"),
    "bill": ("nightly.steps", "bill"),
    "BillingClient": ("client", "BillingClient"),
    "BillingError": ("_core.errors", "BillingError"),
    "cancel_subscription": ("subscriptions.service", "cancel_subscription"),
    "change_subscription": ("subscriptions.service", "change_subscription"),
    "Charge": ("rating.prices", "Charge"),
    "ConfigError": ("_core.errors", "ConfigError"),
    "create_invoice": ("invoicing.service", "create_invoice"),
    "create_invoices": ("invoicing.service", "create_invoices"),
    "create_subscription": ("subscriptions.service", "create_subscription"),
    "daily_quantities": ("usage.queries", "daily_quantities"),
    "default_price_book_text": ("config.price_book", "default_price_book_text"),
    "default_run_date": ("nightly.steps", "default_run_date"),
    "deliver_webhooks": ("webhooks.delivery", "deliver"),
    "DeliveryReport": ("webhooks.report", "DeliveryReport"),
    "EVENT_TYPES": ("webhooks.outbox", "EVENT_TYPES"),
    "expire_lake_snapshots": ("storage.maintenance", "expire_lake_snapshots"),
    "explain_invoice": ("invoicing.explain", "explain_invoice"),
    "FileReport": ("usage.ingest", "FileReport"),
    "finalize_invoice": ("invoicing.service", "finalize_invoice"),
    "generate_sample": ("usage.sample", "generate"),
    "get_invoice": ("invoicing.service", "get_invoice"),
    "get_usage": ("usage.queries", "get_usage"),
    "ingest_logs": ("usage.ingest", "ingest"),
    "IngestError": ("_core.errors", "IngestError"),
    "IngestReport": ("usage.ingest", "IngestReport"),
    "InputError": ("_core.errors", "InputError"),
    "Invoice": ("invoicing.model", "Invoice"),
    "Lake": ("storage.lake", "Lake"),
    "LakeError": ("_core.errors", "LakeError"),
    "Line": ("rating", "Line"),
    "list_invoices": ("invoicing.service", "list_invoices"),
    "load_price_book": ("config.price_book", "load_price_book"),
    "load_settings": ("config.settings", "load_settings"),
    "LockedError": ("_core.errors", "LockedError"),
    "mark_overdue": ("invoicing.service", "mark_overdue"),
    "MetricDef": ("config.settings", "MetricDef"),
    "MetricUsage": ("usage.queries", "MetricUsage"),
    "mirror_to_lake": ("storage.mirror", "mirror_to_lake"),
    "NotFoundError": ("_core.errors", "NotFoundError"),
    "pay_invoice": ("payments.charging", "pay_invoice"),
    "pay_invoices": ("payments.charging", "pay_invoices"),
    "PaymentActionRequiredError": ("_core.errors", "PaymentActionRequiredError"),
    "PaymentAttempt": ("payments.attempts", "PaymentAttempt"),
    "PaymentDeclinedError": ("_core.errors", "PaymentDeclinedError"),
    "PaymentError": ("_core.errors", "PaymentError"),
    "PaymentResult": ("payments.attempts", "PaymentResult"),
    "PaymentTransientError": ("_core.errors", "PaymentTransientError"),
    "period_quantities": ("usage.queries", "period_quantities"),
    "Plan": ("rating.plans", "Plan"),
    "PriceBook": ("rating.plans", "PriceBook"),
    "PriceBookError": ("_core.errors", "PriceBookError"),
    "record_usage_events": ("webhooks.outbox", "record_usage_events"),
    "refresh_rollup": ("usage.rollup", "refresh_rollup"),
    "render_many": ("documents.pool", "render_many"),
    "render_pdf": ("documents.pdf", "render_pdf"),
    "RenderError": ("_core.errors", "RenderError"),
    "RenderResult": ("documents.pool", "RenderResult"),
    "retry_due_payments": ("payments.dunning", "retry_due_payments"),
    "RollupReport": ("usage.rollup", "RollupReport"),
    "RunSummary": ("nightly.summary", "RunSummary"),
    "Settings": ("config.settings", "Settings"),
    "show_subscription": ("subscriptions.service", "show_subscription"),
    "sign_webhook": ("webhooks.signing", "sign"),
    "StateError": ("_core.errors", "StateError"),
    "StripeNotConfiguredError": ("_core.errors", "StripeNotConfiguredError"),
    "Subscription": ("subscriptions.service", "Subscription"),
    "SubscriptionError": ("_core.errors", "SubscriptionError"),
    "UsageQueryError": ("_core.errors", "UsageQueryError"),
    "verify_webhook": ("webhooks.signing", "verify"),
    "void_invoice": ("invoicing.service", "void_invoice"),
    "WebhookError": ("_core.errors", "WebhookError"),
    "WebhookVerificationError": ("_core.errors", "WebhookVerificationError"),
    "write_invoice_files": ("documents.pdf", "write_invoice_files"),
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    try:
        module, attribute = _EXPORTS[name]
    except KeyError:
        raise AttributeError(f"module 'billing_batch' has no attribute {name!r}") from None
    value = getattr(importlib.import_module(f"{__name__}.{module}"), attribute)
    globals()[name] = value  # the next access skips __getattr__
    return value


def __dir__() -> list[str]:
    return sorted([*globals(), *_EXPORTS])
