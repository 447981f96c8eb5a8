"""Many invoices in parallel: results in order, a failing invoice its own error, the same
bytes from a worker process as from this one."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from billing_batch.documents import pool
from tests.documents.samples import invoice


def test_render_many_across_processes(tmp_path: Path, open_pdf: bytes) -> None:
    items = [
        (invoice(), tmp_path, "A"),
        (invoice(tax=0.5), tmp_path, "B"),  # fails: a float amount
        (invoice("void", id="inv_void"), tmp_path, "C"),
    ]
    results = pool.render_many(items, processes=2)
    assert [r.index for r in results] == [0, 1, 2]
    assert [r.ok for r in results] == [True, False, True]
    assert results[1].error is not None and "tax: expected an exact number" in results[1].error
    assert results[1].json_path is None and results[1].pdf_path is None
    assert results[0].pdf_path == tmp_path / "A.pdf" and results[2].invoice_id == "inv_void"
    assert (tmp_path / "A.pdf").read_bytes() == open_pdf  # same bytes in another process
    assert sorted(os.listdir(tmp_path)) == ["A.json", "A.pdf", "C.json", "C.pdf"]


def test_render_many_in_process(tmp_path: Path) -> None:
    results = pool.render_many([(invoice(status="sent"), tmp_path, "X")], processes=0)
    assert len(results) == 1 and results[0].error == "invoice: unknown status 'sent'"
    assert pool.render_many([]) == []
    with pytest.raises(ValueError):
        pool.render_many([], processes=-1)
