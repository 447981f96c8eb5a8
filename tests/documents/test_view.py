"""The view model: display strings, notes, payment states, and documents that cannot be
shown (no PDF needed)."""

from __future__ import annotations

from datetime import date
from typing import Any

import pytest

from billing_batch._core.errors import RenderError
from billing_batch.documents import pdf, view
from tests.documents.samples import D, invoice, line


def test_view_formats_jpy_and_notes() -> None:
    tiers = [
        {
            "tier": 1,
            "from": D(0),
            "upTo": D(1000),
            "quantity": D(1000),
            "unitPrice": D("1.5"),
            "flatFee": D(0),
            "amount": D(1500),
        },
        {
            "tier": 2,
            "from": D(1000),
            "upTo": None,
            "quantity": D(3),
            "unitPrice": D("0.75"),
            "flatFee": D(5),
            "amount": D("7.25"),
        },
        {
            "tier": 3,
            "from": D(5000),
            "upTo": None,
            "quantity": D(0),
            "unitPrice": D("0.5"),
            "flatFee": D(0),
            "amount": D(0),
        },
    ]
    doc = invoice(
        currency="JPY",
        subtotal=D(1507),
        tax=D(151),
        total=D(1658),
        lines=[
            line(
                "API Calls (2,003)",
                "1507",
                quantity=D(2003),
                tiers=tiers,
                included=D(1000),
                periodStart=date(2024, 1, 10),
                periodEnd=date(2024, 1, 31),
                kind="<b>",
            ),
        ],
    )
    shown = view.build_view(doc)
    row = shown["lines"][0]
    assert (row["amount"], row["quantity"], row["unit_price"]) == ("1,507", "2,003", "tiered")
    assert row["notes"] == [
        "2024-01-10 – 2024-01-31",
        "Includes 1,000 free",
        "Tier 1 (0–1,000]: 1,000 × 1.5 = 1,500",
        "Tier 2 (1,000–∞): 3 × 0.75 + 5 flat = 7.25",
    ]
    assert row["kind"] == "other"
    assert (shown["subtotal"], shown["tax"], shown["total"]) == (
        "1,507 JPY",
        "151 JPY",
        "1,658 JPY",
    )


def test_view_payment_states() -> None:
    paid = view.build_view(
        invoice(
            "paid",
            payment={
                "status": "succeeded",
                "paidAt": "2024-02-03T10:00:00Z",
                "paymentIntentId": "pi_1",
            },
        )
    )
    assert paid["payment"]["label"] == "paid on 2024-02-03"
    assert paid["payment"]["notes"] == ["Payment reference: pi_1"]
    assert paid["modified"] == "2024-02-03T10:00:00Z" and paid["mark"] is None
    failed = view.build_view(
        invoice(payment={"status": "requires_action", "paymentIntentId": "pi_2"})
    )
    assert failed["payment"]["notes"][0] == "Last payment attempt: requires action"
    overdue = view.build_view(invoice("overdue"))
    assert overdue["payment"]["label"] == "overdue since 2024-03-02"
    draft = view.build_view(invoice("draft"))
    assert (draft["mark"], draft["created"], draft["reference"]) == (
        "DRAFT",
        None,
        "Draft inv_seed",
    )


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"status": "sent"}, "unknown status 'sent'"),
        ({"total": 550.0}, "total: expected an exact number"),
        ({"currency": "DOLLARS"}, "ISO 4217"),
        ({"issuedAt": "yesterday"}, "issuedAt: not an ISO date"),
        ({"lineItems": [{"description": "x"}]}, r"lineItems\[0\]: missing 'amount'"),
        ({"period": "2024-01"}, "period must be an object"),
    ],
)
def test_bad_documents_are_render_errors(change: dict[str, Any], message: str) -> None:
    with pytest.raises(RenderError, match=message):
        pdf.render_html(invoice(**change))
