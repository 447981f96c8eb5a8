"""Shared by the pricing-correction tests: settings with a price book file in the home
that the test may edit (discounts, price changes)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from billing_batch.config.price_book import default_price_book_text
from billing_batch.config.settings import Settings, load_settings

#: ws_123 (the seed's usage: 45,000 api_calls, 100 contracts) with a 10% discount.
DISCOUNT = """
[workspaces.ws_123]
legal_name = "Example Corp."
[workspaces.ws_123.discounts.launch]
percent = "10"
start = 2024-01-01
periods = 3
description = "Launch discount"
"""


def book_settings(home: Path, monkeypatch: pytest.MonkeyPatch, extra: str = DISCOUNT) -> Settings:
    """Settings whose price book is ``home/prices.toml``: the built-in book plus ``extra``."""
    home.mkdir(parents=True, exist_ok=True)
    (home / "prices.toml").write_text(default_price_book_text() + extra)
    (home / "billing.toml").write_text('price_book = "prices.toml"\n')
    monkeypatch.setenv("BILLING_HOME", str(home))
    env = {"BILLING_HOME": str(home), "BILLING_LAKE_MEMORY_LIMIT": "512MB"}
    return load_settings(env=env)


def change_prices(settings: Settings, old: str, new: str, version: str) -> None:
    """Edit the book in place (a price change under a new version)."""
    path = settings.home / "prices.toml"
    text = path.read_text()
    assert old in text
    text = text.replace(old, new, 1).replace('version = "default-2024.1"', f'version = "{version}"')
    path.write_text(text)


def golden(path: Path, got: str) -> None:
    """``got`` must equal the reviewed golden file (``BILLING_UPDATE_GOLDEN=1`` rewrites it,
    as for tests/rating: review the diff); a missing file fails."""
    if os.environ.get("BILLING_UPDATE_GOLDEN") == "1":
        path.write_text(got)
    if not path.exists():
        pytest.fail(f"golden file {path} is missing: run with BILLING_UPDATE_GOLDEN=1, review")
    assert got == path.read_text()
