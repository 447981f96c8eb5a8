"""Fixtures of the usage tests."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.usage.support import close_readers


@pytest.fixture(autouse=True)
def _close_readers() -> Iterator[None]:
    yield
    close_readers()
