"""Stored price-book versions: every book that prices an invoice is kept in the state,
content-addressed by its digest (``sha256`` of the normalized content,
:func:`billing_batch.rating.plans.book_digest`), the TOML text as it was read.

So an invoice can always be explained and re-rated with *its own* book
(``invoice explain``, ``invoice rerate``), whatever the price book says today: the
invoice records the digest, the state keeps the text. Stored the first time a book prices
an invoice (:func:`remember`, called by :func:`.lifecycle.issue` inside the invoice's
transaction); a known digest is never rewritten.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from .._core import clock
from .._core.errors import PriceBookError
from ..config.price_book import default_price_book_text, parse_price_book
from ..config.settings import Settings
from ..rating.plans import PriceBook
from ..storage import state
from ..storage.state import StateConnection

#: The source name of a book read back from the state.
STORED_PREFIX = "<stored "


def book_text(book: PriceBook) -> str:
    """The TOML text ``book`` was read from (its file again, or the built-in book),
    checked to still have the book's digest (a file edited since it was read is refused,
    never stored under the wrong digest)."""
    if book.source == "<default>":
        text = default_price_book_text()
    elif book.source.startswith("<"):
        raise PriceBookError(
            f"{book.source}: the price book {book.version} was not read from a file; "
            "its text cannot be stored"
        )
    else:
        try:
            text = Path(book.source).read_text(encoding="utf-8")
        except OSError as exc:
            raise PriceBookError(
                f"{book.source}: cannot read the price book again: {exc}"
            ) from None
    again = parse_price_book(text, source=book.source)
    if again.digest != book.digest:
        raise PriceBookError(
            f"{book.source}: the file changed while it was in use (digest {again.digest}, "
            f"was {book.digest}); run again"
        )
    return text


def is_stored(con: StateConnection, digest: str) -> bool:
    return state.query(con, "price_books/book_by_digest", {"digest": digest}).fetchone() is not None


def remember(con: StateConnection, book: PriceBook, now: datetime) -> bool:
    """Store ``book`` unless its digest is stored already (inside the caller's
    transaction). Returns whether it was stored now."""
    if book.source.startswith(STORED_PREFIX) or is_stored(con, book.digest):
        return False
    params = {
        "digest": book.digest,
        "version": book.version,
        "source": book.source,
        "content": book_text(book),
        "first_used_at": clock.ts(now),
    }
    return state.query(con, "price_books/insert_book", params).rowcount == 1


def stored_book(settings: Settings, con: StateConnection, digest: str) -> PriceBook | None:
    """The stored book with this digest (validated against today's metric catalogue),
    or None when none is stored."""
    row = state.query(con, "price_books/book_by_digest", {"digest": digest}).fetchone()
    if row is None:
        return None
    book = parse_price_book(
        row["content"], source=f"{STORED_PREFIX}{digest}>", metrics=settings.metrics
    )
    if book.digest != digest:  # pragma: no cover - the text is stored only after this check
        raise PriceBookError(f"stored price book {digest} now has digest {book.digest}")
    return book


@dataclass(frozen=True)
class BookVersion:
    digest: str
    version: str
    source: str
    first_used_at: datetime


def list_books(con: StateConnection) -> list[BookVersion]:
    """The stored versions, oldest first."""
    return [
        BookVersion(r["digest"], r["version"], r["source"], clock.parse_ts(r["first_used_at"]))
        for r in state.query(con, "price_books/list_books")
    ]


__all__ = [
    "STORED_PREFIX",
    "BookVersion",
    "book_text",
    "is_stored",
    "list_books",
    "remember",
    "stored_book",
]
