"""Shared renders: PDFs are slow-ish (~0.1 s each), so the few rendered by a test module
are module-scoped and shared within it."""

from __future__ import annotations

from pathlib import Path

import pytest

from billing_batch.documents import pdf
from tests.documents.samples import invoice


@pytest.fixture(scope="module")
def folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("render")


@pytest.fixture(scope="module")
def open_pdf() -> bytes:
    return pdf.render_pdf(invoice())
