"""The invoice PDF read back (pdftotext, pypdf): its content, marks and pages, hostile
text printed as text, determinism, the preview HTML, and its files written atomically."""

from __future__ import annotations

import logging
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pypdf
import pytest

from billing_batch._core import files, jsonutil
from billing_batch._core.errors import RenderError
from billing_batch.config.settings import TEMPLATES_DIR
from billing_batch.documents import fetcher, pdf
from tests.documents.samples import HOSTILE, OWN_CSS, D, invoice, line


def pdftotext(data: bytes, folder: Path, *, layout: bool = True) -> str:
    path = folder / "doc.pdf"
    path.write_bytes(data)
    args = ["pdftotext", *(["-layout"] if layout else []), str(path), "-"]
    return subprocess.run(args, check=True, capture_output=True, text=True).stdout


def page_texts(data: bytes, folder: Path) -> list[str]:
    path = folder / "pages.pdf"
    path.write_bytes(data)
    return [page.extract_text() for page in pypdf.PdfReader(path).pages]


class Collect(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(record.getMessage())


@pytest.fixture(scope="module")
def open_text(open_pdf: bytes, folder: Path) -> str:
    return pdftotext(open_pdf, folder)


@pytest.fixture(scope="module")
def long_draft() -> dict[str, Any]:
    lines = [
        line(f"Item {i:03d}", f"{i}.00", quantity=D(i), unit="checks", unitPrice=D(1))
        for i in range(1, 201)
    ]
    return invoice(
        "draft",
        lines=lines,
        billTo={"workspaceId": "ws_evil", "name": HOSTILE, "address": "", "email": ""},
    )


@pytest.fixture(scope="module")
def long_render(long_draft: dict[str, Any]) -> Iterator[tuple[bytes, Any, list[str]]]:
    """The 200-line draft, rendered with a fresh engine and a recording fetcher (so the
    stylesheet is fetched and parsed again, through it), collecting WeasyPrint's logs."""
    recording = fetcher.safe_url_fetcher(TEMPLATES_DIR)
    collect = Collect()
    logger = logging.getLogger("weasyprint")
    logger.addHandler(collect)
    try:
        data = pdf.render_pdf(long_draft, url_fetcher=recording)
    finally:
        logger.removeHandler(collect)
    yield data, recording, collect.messages


@pytest.fixture(scope="module")
def long_pages(long_render: tuple[bytes, Any, list[str]], folder: Path) -> list[str]:
    return page_texts(long_render[0], folder)


# --- content -------------------------------------------------------------------------------


def test_pdf_shows_the_invoice(open_text: str) -> None:
    for expected in [
        "Billing Rail, Inc.",
        "1 Market Street",
        "billing@example.com",
        "Acme Corp.",
        "1 Acme Road",
        "ap@acme.test",
        "Workspace ws_123",
        "INV-2024-000001",
        "Issue date",
        "2024-02-01",
        "Due date",
        "2024-03-02",
        "2024-01-01 – 2024-01-31",
        "API Calls (45,000)",
        "Contracts (100)",
        "45,000 calls",
        "0.01",
        "0.50",
        "450.00",
        "Subtotal",
        "500.00 USD",
        "Tax (10%)",
        "50.00 USD",
        "550.00 USD",
        "AMOUNT (USD)",
        "Status",
        "Open",
        "Payment status: awaiting payment, due 2024-03-02",
        "Page 1 of 1",
        "default-2024.1",
    ]:
        assert expected in open_text, expected


def test_open_invoice_has_no_mark(open_pdf: bytes, folder: Path) -> None:
    # pypdf, not pdftotext: pdftotext breaks the rotated mark into single letters
    (text,) = page_texts(open_pdf, folder)
    assert "DRAFT" not in text and "VOID" not in text
    assert "Open" in text


def test_pdf_is_deterministic(open_pdf: bytes, folder: Path) -> None:
    assert pdf.render_pdf(invoice()) == open_pdf
    path = folder / "meta.pdf"
    path.write_bytes(open_pdf)
    reader = pypdf.PdfReader(path)
    meta = reader.metadata
    assert meta is not None
    assert meta["/CreationDate"].startswith("D:20240201020000")  # issuedAt, not the clock
    assert meta["/ModDate"].startswith("D:20240201020000")
    assert meta["/Title"] == "Invoice INV-2024-000001"
    assert reader.trailer["/ID"][0].original_bytes == pdf.pdf_identifier(invoice())


def test_long_invoice_pages_headers_and_draft_mark(long_pages: list[str]) -> None:
    n = len(long_pages)
    assert n >= 2
    for i, text in enumerate(long_pages, start=1):
        assert f"Page {i} of {n}" in text
        assert "DESCRIPTION" in text and "AMOUNT (USD)" in text  # the header repeats
        assert "DRAFT" in text  # the mark is on every page
        assert "VOID" not in text
    everything = "\n".join(long_pages)
    assert all(f"Item {i:03d}" in everything for i in range(1, 201))
    assert "200.00" in long_pages[-1] and "550.00 USD" in long_pages[-1]
    assert "not yet numbered" in long_pages[0]


def test_void_mark(folder: Path) -> None:
    (text,) = page_texts(pdf.render_pdf(invoice("void")), folder)  # pypdf: the rotated mark
    assert "VOID" in text and "DRAFT" not in text
    assert "void, nothing to pay" in text


def test_hostile_name_prints_as_text(
    long_render: tuple[bytes, Any, list[str]], long_draft: dict[str, Any], folder: Path
) -> None:
    data, recording, _ = long_render
    assert HOSTILE in pdftotext(data, folder, layout=False)
    assert recording.requested == OWN_CSS  # only our two stylesheets were ever asked for
    assert not any("passwd" in url for url in recording.requested)
    assert recording.refused == []
    html = pdf.render_html(long_draft)
    assert HOSTILE not in html and "&lt;img src=" in html


def test_no_weasyprint_warnings(long_render: tuple[bytes, Any, list[str]]) -> None:
    assert long_render[2] == []  # the CSS parses cleanly, nothing was refused


def test_preview_html_links_the_stylesheet() -> None:
    assert 'href="invoice.css"' in pdf.render_html(invoice(), link_stylesheet=True)
    assert "invoice.css" not in pdf.render_html(invoice())


# --- files ---------------------------------------------------------------------------------------


def test_write_invoice_files_is_atomic(
    tmp_path: Path, open_pdf: bytes, monkeypatch: pytest.MonkeyPatch
) -> None:
    out = tmp_path / "invoices"
    doc = invoice()
    json_path, pdf_path = pdf.write_invoice_files(doc, out, "INV-2024-000001")
    assert (json_path, pdf_path) == (out / "INV-2024-000001.json", out / "INV-2024-000001.pdf")
    assert json_path.read_text() == jsonutil.dumps(doc, indent=2) + "\n"
    assert jsonutil.loads(json_path.read_text()) == jsonutil.loads(jsonutil.dumps(doc))
    assert pdf_path.read_bytes() == open_pdf
    assert sorted(os.listdir(out)) == ["INV-2024-000001.json", "INV-2024-000001.pdf"]
    before = {p.name: p.read_bytes() for p in out.iterdir()}

    # a document that cannot render: nothing written, the earlier files untouched
    with pytest.raises(RenderError):
        pdf.write_invoice_files(invoice(total=550.0), out, "INV-2024-000001")
    # the disk fails half way (the PDF's temp file): no temp file left behind
    calls: list[str] = []
    real = files._write_temp

    def failing(folder: Path, name: str, data: bytes) -> Path:
        calls.append(name)
        if name.endswith(".pdf"):
            raise OSError(28, "No space left on device")
        return real(folder, name, data)

    monkeypatch.setattr(files, "_write_temp", failing)
    with pytest.raises(OSError, match="No space"):
        pdf.write_invoice_files(invoice(total=D(551)), out, "INV-2024-000001")
    assert calls == ["INV-2024-000001.json", "INV-2024-000001.pdf"]
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before


@pytest.mark.parametrize("name", ["", "../x", "a/b", ".hidden", "a\\b"])
def test_bad_basenames(tmp_path: Path, name: str) -> None:
    with pytest.raises(RenderError, match="file name"):
        pdf.write_invoice_files(invoice(), tmp_path, name)
    assert list(tmp_path.iterdir()) == []


def test_atomic_write_bytes(tmp_path: Path) -> None:
    target = tmp_path / "x.bin"
    files.atomic_write_bytes(target, b"one")
    files.atomic_write_bytes(target, b"two")
    assert target.read_bytes() == b"two" and os.listdir(tmp_path) == ["x.bin"]
