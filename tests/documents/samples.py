"""Invoice documents for the documents tests (and the kill test's renderer): the seed
invoice (45,000 API calls + 100 contracts) in any status, and single lines."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from billing_batch.config.settings import TEMPLATES_DIR
from billing_batch.documents.pdf import STYLESHEET, USER_AGENT_STYLESHEET

D = Decimal
HOSTILE = '<img src="file:///etc/passwd">'
#: The two stylesheets every render fetches (and nothing else).
OWN_CSS = [(TEMPLATES_DIR.resolve() / n).as_uri() for n in (STYLESHEET, USER_AGENT_STYLESHEET)]


def line(description: str, amount: str, **extra: Any) -> dict[str, Any]:
    item: dict[str, Any] = {
        "description": description,
        "amount": D(amount),
        "kind": "usage",
        "metric": "api_calls",
        "plan": "payg",
        "quantity": None,
        "unit": None,
        "unitPrice": None,
        "periodStart": "2024-01-01",
        "periodEnd": "2024-01-31",
        "tiers": [],
    }
    item.update(extra)
    return item


def invoice(
    status: str = "open", *, lines: list[dict[str, Any]] | None = None, **extra: Any
) -> dict[str, Any]:
    """The seed invoice (45,000 API calls + 100 contracts), finalized unless draft."""
    if lines is None:
        lines = [
            line(
                "API Calls (45,000)", "450.00", quantity=D(45000), unit="calls", unitPrice=D("0.01")
            ),
            line(
                "Contracts (100)",
                "50.00",
                metric="contracts",
                quantity=D(100),
                unit="contracts",
                unitPrice=D("0.50"),
            ),
        ]
    numbered = status != "draft"
    doc: dict[str, Any] = {
        "id": "inv_seed",
        "workspaceId": "ws_123",
        "status": status,
        "number": "INV-2024-000001" if numbered else None,
        "currency": "USD",
        "period": {"start": "2024-01-01", "end": "2024-01-31"},
        "issuedAt": "2024-02-01T02:00:00Z" if numbered else None,
        "dueDate": "2024-03-02" if numbered else None,
        "subtotal": D(500),
        "taxRate": D("0.1"),
        "tax": D(50),
        "total": D(550),
        "lineItems": lines,
        "billTo": {
            "workspaceId": "ws_123",
            "name": "Acme Corp.",
            "address": "1 Acme Road\nSpringfield",
            "email": "ap@acme.test",
        },
        "issuer": {
            "name": "Billing Rail, Inc.",
            "address": "1 Market Street\nSan Francisco, CA 94105",
            "email": "billing@example.com",
        },
        "priceBookVersion": "default-2024.1",
        "lakeSnapshotId": 12,
        "payment": None,
    }
    doc.update(extra)
    return doc
