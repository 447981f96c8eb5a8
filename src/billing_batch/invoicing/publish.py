"""Publishing an invoice's files: ``invoices/<number>.json`` and ``.pdf`` (on local disk
or object storage: ``storage.files``), written once from the document frozen at
finalization (never re-rendered from a later state). A failed render leaves no file and
is retried by the next call.

Three phases, so that the rendering (pure work, no shared write but the files) can run
anywhere while the state is written by the coordinator alone:

1. :func:`pending_documents` (coordinator): what to render, read from the state;
2. :func:`render_documents` (anywhere: this process's pool, or a Dask worker given the
   settings): render and PUT the files, return where they went;
3. :func:`record_files` (coordinator): one short state transaction records the paths.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from .._core.jsonutil import loads
from ..config.settings import Settings
from ..storage import state
from ..storage.files import area
from .store import set_files, unpublished_invoices


@dataclass(frozen=True)
class Pending:
    """One finalized invoice without files yet: its frozen document."""

    invoice_id: str
    number: str
    document: dict[str, Any]


@dataclass(frozen=True)
class Published:
    """What rendering one invoice gave: its two locations, or the error."""

    invoice_id: str
    json_path: str | None
    pdf_path: str | None
    error: str | None


def pending_documents(
    settings: Settings, invoice_ids: Sequence[str] | None = None
) -> list[Pending]:
    """Finalized invoices with no files yet (all, or those of ``invoice_ids``)."""
    with state.opened(settings) as con:
        rows = unpublished_invoices(con)
    wanted = set(invoice_ids) if invoice_ids is not None else None
    return [
        Pending(invoice_id, number, loads(document))
        for invoice_id, number, document in rows
        if wanted is None or invoice_id in wanted
    ]


def render_documents(
    settings: Settings,
    todo: Sequence[Pending],
    *,
    processes: int | None = None,
    progress: Callable[[int], None] | None = None,
) -> list[Published]:
    """Render and write the JSON and PDF of ``todo`` into the invoices area, across
    ``processes`` local processes (None: ``[invoices] render_processes``). Writes no
    state: safe on any worker that has the settings."""
    from ..documents.pool import render_many

    if not todo:
        return []
    out = area(settings, "invoices")
    n = processes if processes is not None else settings.invoices.render_processes
    results = render_many(
        [(p.document, out, p.number) for p in todo], processes=n, progress=progress
    )
    return [
        Published(
            p.invoice_id,
            None if r.json_path is None else str(r.json_path),
            None if r.pdf_path is None else str(r.pdf_path),
            r.error,
        )
        for p, r in zip(todo, results, strict=True)
    ]


def record_files(settings: Settings, published: Sequence[Published]) -> None:
    """Record the files of the invoices rendered without error (one transaction)."""
    done = [p for p in published if p.error is None and p.json_path and p.pdf_path]
    if not done:
        return
    with state.opened(settings) as con, state.transaction(con):
        set_files(con, [(p.invoice_id, str(p.json_path), str(p.pdf_path)) for p in done])


def publish_invoice_files(
    settings: Settings, invoice_ids: Sequence[str] | None = None, *, processes: int | None = None
) -> list[tuple[str, str | None]]:
    """Write ``invoices/<number>.json`` and ``.pdf`` for finalized invoices that have none
    yet (all of them when ``invoice_ids`` is None): the frozen document as finalized,
    rendered in parallel. Returns (invoice id, error or None) per invoice attempted."""
    from .._core.progress import progress

    todo = pending_documents(settings, invoice_ids)
    if not todo:
        return []
    from ..storage.uploader import close_uploaders

    try:
        with progress(f"rendering {len(todo)} invoice(s)", total=len(todo)) as advance:
            published = render_documents(settings, todo, processes=processes, progress=advance)
    finally:
        close_uploaders()  # this process's upload helper, if it rendered to object storage
    record_files(settings, published)
    return [(p.invoice_id, p.error) for p in published]


__all__ = [
    "Pending",
    "Published",
    "pending_documents",
    "publish_invoice_files",
    "record_files",
    "render_documents",
]
