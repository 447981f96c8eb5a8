"""The application factory: ``create_app(settings) -> FastAPI``."""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi

from ..config.settings import Settings
from . import credit_notes, errors, invoices, stripe_webhook, subscriptions, usage
from .auth import KeyRing
from .deps import LakeMirror, install_mirror
from .json import JSONResponse
from .models import UsageBatch

DESCRIPTION = """\
The Billing Rail over HTTP: record and read usage, create, read, list and pay invoices,
download their PDFs, and manage subscriptions. Field names are the seed's (camelCase);
amounts and quantities are exact JSON numbers (`550`, `12.34`).

**Authentication**: `Authorization: Bearer <key>` (or `X-API-Key: <key>`). A workspace key
sees and acts on its own workspace only (another workspace's invoice, PDF, usage or
subscription is 404; a write naming another workspace is 403); a finance/admin key sees
all, and alone may finalize, void and manage subscriptions. As on Stripe, paying a draft
finalizes it first, so a workspace key can create an invoice and pay it.

**Errors**: `{"error": {"code": "...", "message": "..."}}` with a stable `code`, always.

**Usage** recorded here lands in the landing zone and shows in `getUsage` after the next
ingest (`billing-batch ingest` or the nightly run).
"""


def _openapi(app: FastAPI, settings: Settings) -> dict[str, Any]:
    """The generated schema, plus the usage event schemas (the recording endpoint reads
    its body itself) and the metric catalogue as an enum."""
    if app.openapi_schema:
        return app.openapi_schema
    schema = get_openapi(
        title=app.title,
        version=app.version,
        description=app.description,
        routes=app.routes,
        tags=app.openapi_tags,
    )
    components = schema.setdefault("components", {}).setdefault("schemas", {})
    batch = UsageBatch.model_json_schema(ref_template="#/components/schemas/{model}")
    components.update(batch.pop("$defs", {}))
    components["UsageBatch"] = batch
    metrics = list(settings.metrics)
    components["UsageEvent"]["properties"]["metric"]["enum"] = metrics
    for param in schema["paths"]["/v1/billing/usage"]["get"].get("parameters", []):
        if param["name"] == "metric":
            param["schema"] = {"type": "string", "enum": metrics}
            param["description"] = "One metric of the catalogue (default: every metric)"
    app.openapi_schema = schema
    return schema


def create_app(settings: Settings, *, mirror: bool = True) -> FastAPI:
    """The HTTP API over ``settings``.

    ``mirror=False`` skips copying the state into the lake after state changes (tests;
    the nightly run mirrors anyway). Raises ConfigError for a malformed key hash.
    """
    from .. import __version__

    app = FastAPI(
        title="Billing Rail API",
        version=__version__,
        description=DESCRIPTION,
        default_response_class=JSONResponse,
        openapi_tags=[
            {"name": "usage", "description": "Usage metering (recordUsage, getUsage)"},
            {"name": "invoices", "description": "Invoices, payments and PDFs"},
            {"name": "subscriptions", "description": "Plans per workspace over time"},
            {"name": "credit notes", "description": "Corrections of finalized invoices (admin)"},
            {"name": "stripe", "description": "Stripe's events (signed by Stripe)"},
        ],
    )
    app.state.settings = settings
    app.state.keyring = KeyRing(settings.api.keys)
    app.state.mirror = LakeMirror(settings, enabled=mirror)
    install_mirror(app)
    errors.install(app)
    app.include_router(usage.router)
    app.include_router(invoices.router)
    app.include_router(subscriptions.router)
    app.include_router(credit_notes.router)
    app.include_router(stripe_webhook.router)

    def openapi() -> dict[str, Any]:
        return _openapi(app, settings)

    app.openapi = openapi  # type: ignore[method-assign]
    return app
