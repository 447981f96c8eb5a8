"""The state store as the webhook modules use it: SQLite errors mapped into the
project's tree at this one place."""

from __future__ import annotations

import itertools
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from typing import TypeVar

from .._core.errors import LakeError
from ..config.settings import Settings
from ..storage import state
from ..storage.state import StateConnection


@contextmanager
def opened(settings: Settings) -> Iterator[StateConnection]:
    """The state store (:func:`billing_batch.storage.state.opened`); a SQLite error
    while it is open is a LakeError."""
    try:
        with state.opened(settings) as con:
            yield con
    except state.DB_ERRORS as exc:
        raise LakeError(f"state store error during webhook delivery: {exc}") from exc


_T = TypeVar("_T")


def first(rows: Iterable[_T], limit: int | None) -> list[_T]:
    """The first ``limit`` rows; all of them when ``limit`` is None or negative (as a
    SQL ``LIMIT`` is read by SQLite)."""
    return list(itertools.islice(rows, None if limit is None or limit < 0 else limit))


__all__ = ["first", "opened"]
