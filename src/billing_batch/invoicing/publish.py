"""Publishing an invoice's files: ``invoices/<number>.json`` and ``.pdf``, written once
from the document frozen at finalization (never re-rendered from a later state), in
parallel worker processes (:func:`billing_batch.documents.pool.render_many`). A failed
render leaves no file and is retried by the next call."""

from __future__ import annotations

from collections.abc import Sequence

from .._core.jsonutil import loads
from ..config.settings import Settings
from ..storage import state
from .store import set_files, unpublished_invoices


def publish_invoice_files(
    settings: Settings, invoice_ids: Sequence[str] | None = None, *, processes: int | None = None
) -> list[tuple[str, str | None]]:
    """Write ``invoices/<number>.json`` and ``.pdf`` for finalized invoices that have none
    yet (all of them when ``invoice_ids`` is None): the frozen document as finalized,
    rendered in parallel. Returns (invoice id, error or None) per invoice attempted."""
    from .._core.progress import progress
    from ..documents.pool import render_many

    with state.opened(settings) as con:
        rows = unpublished_invoices(con)
    wanted = set(invoice_ids) if invoice_ids is not None else None
    todo = [r for r in rows if wanted is None or r[0] in wanted]
    if not todo:
        return []
    out_dir = settings.invoices_dir
    out_dir.mkdir(parents=True, exist_ok=True)
    n = processes if processes is not None else settings.invoices.render_processes
    with progress(f"rendering {len(todo)} invoice(s)", total=len(todo)) as advance:
        results = render_many(
            [(loads(document), out_dir, number) for _, number, document in todo],
            processes=n,
            progress=advance,
        )
    report: list[tuple[str, str | None]] = []
    with state.opened(settings) as con, state.transaction(con):
        for (invoice_id, _, _), res in zip(todo, results, strict=True):
            if res.error is None:
                set_files(con, invoice_id, str(res.json_path), str(res.pdf_path))
            report.append((invoice_id, res.error))
    return report


__all__ = ["publish_invoice_files"]
