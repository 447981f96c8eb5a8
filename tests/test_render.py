"""render: the invoice PDF read back (pdftotext, pypdf), its safety (escaping, the URL
fetcher, no network), determinism, atomic files and parallel rendering.

PDFs are slow-ish (~0.1 s each): the few rendered here are module-scoped and shared.
"""

from __future__ import annotations

import logging
import os
import socket
import subprocess
from collections.abc import Iterator
from datetime import date
from decimal import Decimal
from pathlib import Path
from typing import Any

import pypdf
import pytest

from billing_batch._core import files, jsonutil
from billing_batch._core.errors import RenderError
from billing_batch.config.settings import TEMPLATES_DIR
from billing_batch.documents import render

D = Decimal
HOSTILE = '<img src="file:///etc/passwd">'
CSS_URL = (TEMPLATES_DIR.resolve() / render.STYLESHEET).as_uri()
UA_URL = (TEMPLATES_DIR.resolve() / "user-agent.css").as_uri()
OWN_CSS = [CSS_URL, UA_URL]


def line(description: str, amount: str, **extra: Any) -> dict[str, Any]:
    item: dict[str, Any] = {
        "description": description,
        "amount": D(amount),
        "kind": "usage",
        "metric": "api_calls",
        "plan": "payg",
        "quantity": None,
        "unit": None,
        "unitPrice": None,
        "periodStart": "2024-01-01",
        "periodEnd": "2024-01-31",
        "tiers": [],
    }
    item.update(extra)
    return item


def invoice(
    status: str = "open", *, lines: list[dict[str, Any]] | None = None, **extra: Any
) -> dict[str, Any]:
    """The seed invoice (45,000 API calls + 100 contracts), finalized unless draft."""
    if lines is None:
        lines = [
            line(
                "API Calls (45,000)", "450.00", quantity=D(45000), unit="calls", unitPrice=D("0.01")
            ),
            line(
                "Contracts (100)",
                "50.00",
                metric="contracts",
                quantity=D(100),
                unit="contracts",
                unitPrice=D("0.50"),
            ),
        ]
    numbered = status != "draft"
    doc: dict[str, Any] = {
        "id": "inv_seed",
        "workspaceId": "ws_123",
        "status": status,
        "number": "INV-2024-000001" if numbered else None,
        "currency": "USD",
        "period": {"start": "2024-01-01", "end": "2024-01-31"},
        "issuedAt": "2024-02-01T02:00:00Z" if numbered else None,
        "dueDate": "2024-03-02" if numbered else None,
        "subtotal": D(500),
        "taxRate": D("0.1"),
        "tax": D(50),
        "total": D(550),
        "lineItems": lines,
        "billTo": {
            "workspaceId": "ws_123",
            "name": "Acme Corp.",
            "address": "1 Acme Road\nSpringfield",
            "email": "ap@acme.test",
        },
        "issuer": {
            "name": "Billing Rail, Inc.",
            "address": "1 Market Street\nSan Francisco, CA 94105",
            "email": "billing@example.com",
        },
        "priceBookVersion": "default-2024.1",
        "lakeSnapshotId": 12,
        "payment": None,
    }
    doc.update(extra)
    return doc


def pdftotext(pdf: bytes, folder: Path, *, layout: bool = True) -> str:
    path = folder / "doc.pdf"
    path.write_bytes(pdf)
    args = ["pdftotext", *(["-layout"] if layout else []), str(path), "-"]
    return subprocess.run(args, check=True, capture_output=True, text=True).stdout


def page_texts(pdf: bytes, folder: Path) -> list[str]:
    path = folder / "pages.pdf"
    path.write_bytes(pdf)
    return [page.extract_text() for page in pypdf.PdfReader(path).pages]


class Collect(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(record.getMessage())


# --- shared renders --------------------------------------------------------------------


@pytest.fixture(scope="module")
def folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("render")


@pytest.fixture(scope="module")
def open_pdf() -> bytes:
    return render.render_pdf(invoice())


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
    fetcher = render.safe_url_fetcher(TEMPLATES_DIR)
    collect = Collect()
    logger = logging.getLogger("weasyprint")
    logger.addHandler(collect)
    try:
        pdf = render.render_pdf(long_draft, url_fetcher=fetcher)
    finally:
        logger.removeHandler(collect)
    yield pdf, fetcher, collect.messages


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
    assert render.render_pdf(invoice()) == open_pdf
    path = folder / "meta.pdf"
    path.write_bytes(open_pdf)
    reader = pypdf.PdfReader(path)
    meta = reader.metadata
    assert meta is not None
    assert meta["/CreationDate"].startswith("D:20240201020000")  # issuedAt, not the clock
    assert meta["/ModDate"].startswith("D:20240201020000")
    assert meta["/Title"] == "Invoice INV-2024-000001"
    assert reader.trailer["/ID"][0].original_bytes == render.pdf_identifier(invoice())


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
    (text,) = page_texts(render.render_pdf(invoice("void")), folder)  # pypdf: the rotated mark
    assert "VOID" in text and "DRAFT" not in text
    assert "void, nothing to pay" in text


def test_hostile_name_prints_as_text(
    long_render: tuple[bytes, Any, list[str]], long_draft: dict[str, Any], folder: Path
) -> None:
    pdf, fetcher, _ = long_render
    assert HOSTILE in pdftotext(pdf, folder, layout=False)
    assert fetcher.requested == OWN_CSS  # only our two stylesheets were ever asked for
    assert not any("passwd" in url for url in fetcher.requested)
    assert fetcher.refused == []
    html = render.render_html(long_draft)
    assert HOSTILE not in html and "&lt;img src=" in html


def test_no_weasyprint_warnings(long_render: tuple[bytes, Any, list[str]]) -> None:
    assert long_render[2] == []  # the CSS parses cleanly, nothing was refused


# --- the URL fetcher and no network -------------------------------------------------------------


@pytest.fixture
def listener() -> Iterator[socket.socket]:
    """A loopback TCP server nobody should connect to."""
    srv = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    srv.bind(("127.0.0.1", 0))
    srv.listen(8)
    srv.setblocking(False)
    try:
        yield srv
    finally:
        srv.close()


@pytest.mark.parametrize(
    "tag",
    [
        '<link rel="stylesheet" href="http://127.0.0.1:{port}/evil.css">',
        '<img src="http://127.0.0.1:{port}/pixel.png">',
        '<img src="file:///etc/passwd">',
        '<link rel="stylesheet" href="../../../../etc/passwd">',
        '<img src="data:image/png;base64,iVBORw0KGgo=">',
    ],
)
def test_foreign_urls_are_refused(tag: str, listener: socket.socket) -> None:
    port = listener.getsockname()[1]
    fetcher = render.safe_url_fetcher(TEMPLATES_DIR)
    html = f"<html><head>{tag.format(port=port)}</head><body><p>x</p></body></html>"
    with pytest.raises(RenderError, match="refused"):
        render.html_to_pdf(html, identifier=b"test", url_fetcher=fetcher)
    assert len(fetcher.refused) == 1 and fetcher.refused == fetcher.requested[len(OWN_CSS) :]
    with pytest.raises(BlockingIOError):  # nothing ever connected
        listener.accept()


def test_fetcher_serves_only_files_inside_its_root(tmp_path: Path) -> None:
    root = tmp_path / "templates"
    (root / "sub").mkdir(parents=True)
    (root / "a.css").write_text("p { color: red }")
    (root / "sub" / "b.css").write_text("p { color: blue }")
    secret = tmp_path / "secret.txt"
    secret.write_text("secret")
    (root / "link.css").symlink_to(secret)
    fetcher = render.safe_url_fetcher(root)
    ok = fetcher.fetch((root / "a.css").as_uri())
    assert ok.read() == b"p { color: red }" and ok.content_type == "text/css"
    assert fetcher.fetch((root / "sub" / "b.css").as_uri()).read() == b"p { color: blue }"
    refused = [
        secret.as_uri(),
        root.as_uri() + "/../secret.txt",
        root.as_uri() + "/sub/%2E%2E/%2E%2E/secret.txt",
        (root / "link.css").as_uri(),  # a symlink out of the root
        (root / "missing.css").as_uri(),
        (root / "sub").as_uri(),  # a folder
        "file://otherhost" + (root / "a.css").as_posix(),
        "http://127.0.0.1:9/a.css",
        "https://example.com/a.css",
        "ftp://example.com/a.css",
        "data:text/css,p{}",
    ]
    for url in refused:
        with pytest.raises(render.FetchRefusedError):
            fetcher.fetch(url)
    assert fetcher.refused == refused


# --- the view (no PDF needed) -----------------------------------------------------------------


def test_view_formats_jpy_and_notes() -> None:
    tiers = [
        {
            "tier": 1,
            "from": D(0),
            "upTo": D(1000),
            "quantity": D(1000),
            "unitPrice": D("1.5"),
            "flatFee": D(0),
            "amount": D(1500),
        },
        {
            "tier": 2,
            "from": D(1000),
            "upTo": None,
            "quantity": D(3),
            "unitPrice": D("0.75"),
            "flatFee": D(5),
            "amount": D("7.25"),
        },
        {
            "tier": 3,
            "from": D(5000),
            "upTo": None,
            "quantity": D(0),
            "unitPrice": D("0.5"),
            "flatFee": D(0),
            "amount": D(0),
        },
    ]
    doc = invoice(
        currency="JPY",
        subtotal=D(1507),
        tax=D(151),
        total=D(1658),
        lines=[
            line(
                "API Calls (2,003)",
                "1507",
                quantity=D(2003),
                tiers=tiers,
                included=D(1000),
                periodStart=date(2024, 1, 10),
                periodEnd=date(2024, 1, 31),
                kind="<b>",
            ),
        ],
    )
    view = render.build_view(doc)
    row = view["lines"][0]
    assert (row["amount"], row["quantity"], row["unit_price"]) == ("1,507", "2,003", "tiered")
    assert row["notes"] == [
        "2024-01-10 – 2024-01-31",
        "Includes 1,000 free",
        "Tier 1 (0–1,000]: 1,000 × 1.5 = 1,500",
        "Tier 2 (1,000–∞): 3 × 0.75 + 5 flat = 7.25",
    ]
    assert row["kind"] == "other"
    assert (view["subtotal"], view["tax"], view["total"]) == ("1,507 JPY", "151 JPY", "1,658 JPY")


def test_view_payment_states() -> None:
    paid = render.build_view(
        invoice(
            "paid",
            payment={
                "status": "succeeded",
                "paidAt": "2024-02-03T10:00:00Z",
                "paymentIntentId": "pi_1",
            },
        )
    )
    assert paid["payment"]["label"] == "paid on 2024-02-03"
    assert paid["payment"]["notes"] == ["Payment reference: pi_1"]
    assert paid["modified"] == "2024-02-03T10:00:00Z" and paid["mark"] is None
    failed = render.build_view(
        invoice(payment={"status": "requires_action", "paymentIntentId": "pi_2"})
    )
    assert failed["payment"]["notes"][0] == "Last payment attempt: requires action"
    overdue = render.build_view(invoice("overdue"))
    assert overdue["payment"]["label"] == "overdue since 2024-03-02"
    draft = render.build_view(invoice("draft"))
    assert (draft["mark"], draft["created"], draft["reference"]) == (
        "DRAFT",
        None,
        "Draft inv_seed",
    )


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"status": "sent"}, "unknown status 'sent'"),
        ({"total": 550.0}, "total: expected an exact number"),
        ({"currency": "DOLLARS"}, "ISO 4217"),
        ({"issuedAt": "yesterday"}, "issuedAt: not an ISO date"),
        ({"lineItems": [{"description": "x"}]}, r"lineItems\[0\]: missing 'amount'"),
        ({"period": "2024-01"}, "period must be an object"),
    ],
)
def test_bad_documents_are_render_errors(change: dict[str, Any], message: str) -> None:
    with pytest.raises(RenderError, match=message):
        render.render_html(invoice(**change))


def test_preview_html_links_the_stylesheet() -> None:
    assert 'href="invoice.css"' in render.render_html(invoice(), link_stylesheet=True)
    assert "invoice.css" not in render.render_html(invoice())


# --- files ---------------------------------------------------------------------------------------


def test_write_invoice_files_is_atomic(
    tmp_path: Path, open_pdf: bytes, monkeypatch: pytest.MonkeyPatch
) -> None:
    out = tmp_path / "invoices"
    doc = invoice()
    json_path, pdf_path = render.write_invoice_files(doc, out, "INV-2024-000001")
    assert (json_path, pdf_path) == (out / "INV-2024-000001.json", out / "INV-2024-000001.pdf")
    assert json_path.read_text() == jsonutil.dumps(doc, indent=2) + "\n"
    assert jsonutil.loads(json_path.read_text()) == jsonutil.loads(jsonutil.dumps(doc))
    assert pdf_path.read_bytes() == open_pdf
    assert sorted(os.listdir(out)) == ["INV-2024-000001.json", "INV-2024-000001.pdf"]
    before = {p.name: p.read_bytes() for p in out.iterdir()}

    # a document that cannot render: nothing written, the earlier files untouched
    with pytest.raises(RenderError):
        render.write_invoice_files(invoice(total=550.0), out, "INV-2024-000001")
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
        render.write_invoice_files(invoice(total=D(551)), out, "INV-2024-000001")
    assert calls == ["INV-2024-000001.json", "INV-2024-000001.pdf"]
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before


@pytest.mark.parametrize("name", ["", "../x", "a/b", ".hidden", "a\\b"])
def test_bad_basenames(tmp_path: Path, name: str) -> None:
    with pytest.raises(RenderError, match="file name"):
        render.write_invoice_files(invoice(), tmp_path, name)
    assert list(tmp_path.iterdir()) == []


def test_atomic_write_bytes(tmp_path: Path) -> None:
    target = tmp_path / "x.bin"
    files.atomic_write_bytes(target, b"one")
    files.atomic_write_bytes(target, b"two")
    assert target.read_bytes() == b"two" and os.listdir(tmp_path) == ["x.bin"]


# --- many, in parallel ---------------------------------------------------------------------------


def test_render_many_across_processes(tmp_path: Path, open_pdf: bytes) -> None:
    items = [
        (invoice(), tmp_path, "A"),
        (invoice(tax=0.5), tmp_path, "B"),  # fails: a float amount
        (invoice("void", id="inv_void"), tmp_path, "C"),
    ]
    results = render.render_many(items, processes=2)
    assert [r.index for r in results] == [0, 1, 2]
    assert [r.ok for r in results] == [True, False, True]
    assert results[1].error is not None and "tax: expected an exact number" in results[1].error
    assert results[1].json_path is None and results[1].pdf_path is None
    assert results[0].pdf_path == tmp_path / "A.pdf" and results[2].invoice_id == "inv_void"
    assert (tmp_path / "A.pdf").read_bytes() == open_pdf  # same bytes in another process
    assert sorted(os.listdir(tmp_path)) == ["A.json", "A.pdf", "C.json", "C.pdf"]


def test_render_many_in_process(tmp_path: Path) -> None:
    results = render.render_many([(invoice(status="sent"), tmp_path, "X")], processes=0)
    assert len(results) == 1 and results[0].error == "invoice: unknown status 'sent'"
    assert render.render_many([]) == []
    with pytest.raises(ValueError):
        render.render_many([], processes=-1)
