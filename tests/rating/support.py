"""Shared by the rating and price-book tests: the test price book and the goldens.

Goldens: ``tests/golden/pricing_*.json`` are written with ``jsonutil.dumps(indent=2)`` and
compared byte for byte. After an intended change, regenerate them with
``BILLING_UPDATE_GOLDEN=1 .venv/bin/pytest tests/rating`` and review the diff.
"""

from __future__ import annotations

import os
from decimal import Decimal
from pathlib import Path
from typing import Any

from billing_batch._core import jsonutil
from billing_batch.rating.prices import MetricPrice

D = Decimal
GOLDEN = Path(__file__).parents[1] / "golden"

TEST_BOOK = """
version = "test-1"
default_plan = "basic"
default_currency = "USD"
default_tax_rate = "0.10"

[plans.basic]
display_name = "Basic"
[plans.basic.prices.api_calls]
model = "per_unit"
unit_price = "0.01"
[plans.basic.prices.storage]
model = "per_unit"
unit_price = "0.25"

[plans.tiered]
display_name = "Tiered"
base_fee = "99.00"
minimum = "250.00"
[plans.tiered.prices.api_calls]
model = "graduated"
included = "1000"
tiers = [
    { up_to = "10000", unit_price = "0.01" },
    { up_to = "100000", unit_price = "0.005", flat_fee = "5.00" },
    { unit_price = "0.001" },
]
[plans.tiered.prices.contracts]
model = "volume"
tiers = [
    { up_to = "100", unit_price = "0.50" },
    { up_to = "1000", unit_price = "0.40", flat_fee = "10" },
    { unit_price = "0.25" },
]
[plans.tiered.prices.storage]
model = "package"
included = "5"
package_size = "10"
package_price = "2.00"

[plans.yen]
display_name = "Yen"
currency = "JPY"
base_fee = "15000"
[plans.yen.prices.api_calls]
model = "graduated"
tiers = [{ up_to = "1000", unit_price = "1.5" }, { unit_price = "0.75" }]
[plans.yen.prices.storage]
model = "per_unit"
unit_price = "35"

[workspaces.ws_jp]
plan = "yen"
currency = "JPY"
tax_rate = "0.10"
legal_name = "Example KK"
address = "1-1 Chiyoda\\nTokyo"
email = "ap@example.jp"
stripe_customer_id = "cus_jp"
default_payment_method = "pm_card_visa"
net_terms_days = 14

[workspaces.ws_exempt]
tax_rate = "0"
"""


def check_golden(name: str, value: Any) -> None:
    text = jsonutil.dumps(value, indent=2) + "\n"
    path = GOLDEN / f"pricing_{name}.json"
    if os.environ.get("BILLING_UPDATE_GOLDEN"):
        path.write_text(text, encoding="utf-8")
    assert path.read_text(encoding="utf-8") == text, f"{path} differs (see module docstring)"


def cases(price: MetricPrice, currency: str, quantities: list[str]) -> list[dict[str, Any]]:
    return [
        {"quantity": D(q), "charge": price.rate(D(q), currency).to_detail()} for q in quantities
    ]
