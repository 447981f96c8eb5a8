"""Fixtures of the rating tests: the test price book and the built-in one."""

from __future__ import annotations

import pytest

from billing_batch.config.metrics import DEFAULT_METRICS
from billing_batch.config.price_book import parse_price_book, read_price_book
from billing_batch.rating.plans import PriceBook
from tests.rating.support import TEST_BOOK


@pytest.fixture(scope="module")
def book() -> PriceBook:
    return parse_price_book(TEST_BOOK, source="test.toml", metrics=DEFAULT_METRICS)


@pytest.fixture(scope="module")
def default_book() -> PriceBook:
    return read_price_book(metrics=DEFAULT_METRICS)
