"""Fixtures of the webhook tests: a receiver on 127.0.0.1, the endpoints' secrets."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.webhooks.support import SECRET_A, SECRET_B, Receiver, serve


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    with serve() as rcv:
        yield rcv


@pytest.fixture(autouse=True)
def _secrets(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WH_SECRET_A", SECRET_A)
    monkeypatch.setenv("WH_SECRET_B", SECRET_B)
