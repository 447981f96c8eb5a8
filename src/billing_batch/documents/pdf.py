"""The invoice PDF: the template (Jinja2, autoescape on, every value a display string
from :mod:`.view`) rendered by WeasyPrint, which fetches only through
:mod:`.fetcher`.

* **Deterministic.** The same document renders to the same bytes: the PDF's dates come
  from the document (``issuedAt``; ``payment.paidAt`` for the modification date; none for
  a draft), its file identifier from the invoice id, never from the clock or randomness.
* **Fast.** Each process builds its engine once (:func:`prepare_engine`: WeasyPrint
  imported, the stylesheet parsed, one font configuration) and reuses it.
* **Atomic.** :func:`write_invoice_files` renders first, then writes the JSON and the PDF
  through ``_core.files`` (temp name, fsync, rename): a failed render leaves nothing
  behind.
"""

from __future__ import annotations

import functools
import hashlib
import logging
import re
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jinja2

from .._core import jsonutil
from .._core.errors import RenderError
from .._core.files import atomic_write_files
from ..config.settings import TEMPLATES_DIR
from ..storage.files import FileArea
from .fetcher import safe_url_fetcher
from .view import build_view, display_text

INVOICE_TEMPLATE = "invoice.html.j2"
USER_AGENT_STYLESHEET = "user-agent.css"
STYLESHEET = "invoice.css"

_BETWEEN_TAGS = re.compile(r">\s+<")


@functools.cache
def _jinja(templates_dir: Path) -> jinja2.Environment:
    return jinja2.Environment(
        loader=jinja2.FileSystemLoader(str(templates_dir)),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
    )


def render_html(
    doc: Mapping[str, Any],
    *,
    link_stylesheet: bool = False,
    templates_dir: Path = TEMPLATES_DIR,
) -> str:
    """The invoice as HTML. ``link_stylesheet``: link ``invoice.css`` (for a preview, or
    a plain WeasyPrint call with ``base_url`` = the templates folder); the PDF path
    gives WeasyPrint the parsed stylesheet instead."""
    view = build_view(doc)
    try:
        template = _jinja(templates_dir).get_template(INVOICE_TEMPLATE)
        return template.render(v=view, stylesheet_href=STYLESHEET if link_stylesheet else "")
    except jinja2.TemplateError as exc:
        raise RenderError(f"invoice {view['id']}: template error: {exc}") from exc


@dataclass
class _Engine:
    """What a process builds once and reuses for every PDF: WeasyPrint, the fetcher,
    the parsed stylesheet and the font configuration."""

    templates_dir: Path
    weasyprint: Any
    fetcher: Any
    font_config: Any
    stylesheet: Any
    html_class: Any  # weasyprint.HTML, with the lean user-agent stylesheet when available


def _make_engine(templates_dir: Path, fetcher: Any | None = None) -> _Engine:
    import weasyprint
    from weasyprint.text.fonts import FontConfiguration

    fetcher = fetcher if fetcher is not None else safe_url_fetcher(templates_dir)
    font_config = FontConfiguration()
    with _weasyprint_errors(f"stylesheet {STYLESHEET}"):
        css = weasyprint.CSS(
            url=(templates_dir.resolve() / STYLESHEET).as_uri(),
            url_fetcher=fetcher,
            font_config=font_config,
        )
        ua = weasyprint.CSS(
            url=(templates_dir.resolve() / USER_AGENT_STYLESHEET).as_uri(),
            url_fetcher=fetcher,
            font_config=font_config,
        )
    return _Engine(templates_dir, weasyprint, fetcher, font_config, css, _lean_html(weasyprint, ua))


def _lean_html(weasyprint: Any, ua: Any) -> Any:
    """``weasyprint.HTML`` using ``templates/user-agent.css`` instead of the HTML5 UA
    stylesheet (~20% less CPU per invoice). It overrides ``HTML._ua_stylesheets``, a
    private hook: if a WeasyPrint release drops it, the stock class is used unchanged."""
    base = weasyprint.HTML
    if not callable(getattr(base, "_ua_stylesheets", None)):
        return base

    class LeanHTML(base):  # type: ignore[misc, valid-type]
        def _ua_stylesheets(self, forms: bool = False) -> list[Any]:
            return [ua]

    return LeanHTML


@functools.cache
def _engine(templates_dir: Path = TEMPLATES_DIR) -> _Engine:
    return _make_engine(templates_dir)


def prepare_engine() -> None:
    """Build this process's engine now (a render worker does it at start)."""
    _engine()


class _LogCollector(logging.Handler):
    def __init__(self) -> None:
        super().__init__(level=logging.ERROR)
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(record.getMessage())


@contextmanager
def _weasyprint_errors(what: str) -> Iterator[None]:
    """Turn WeasyPrint failures, and the errors it only logs (a resource it could not
    load), into RenderError."""
    from weasyprint.urls import FatalURLFetchingError

    logger = logging.getLogger("weasyprint")
    collector = _LogCollector()
    logger.addHandler(collector)
    try:
        yield
    except RenderError:
        raise
    except FatalURLFetchingError as exc:
        cause = exc.__cause__ or exc
        raise RenderError(f"{what}: {cause}") from None
    except Exception as exc:
        raise RenderError(f"{what}: cannot render the PDF: {exc}") from exc
    finally:
        logger.removeHandler(collector)
    if collector.messages:
        raise RenderError(f"{what}: {'; '.join(collector.messages)}")


def pdf_identifier(doc: Mapping[str, Any]) -> bytes:
    """The PDF's permanent file identifier: derived from the invoice id (stable across
    re-renders; the second identifier is the content hash WeasyPrint computes)."""
    return hashlib.sha256(f"billing-batch:{display_text(doc.get('id'))}".encode()).digest()[:16]


def html_to_pdf(
    html: str,
    *,
    identifier: bytes,
    url_fetcher: Any | None = None,
    templates_dir: Path = TEMPLATES_DIR,
    what: str = "document",
) -> bytes:
    """HTML (as rendered from the templates) → PDF bytes, with the safe fetcher and the
    shared stylesheet. A given ``url_fetcher`` is used for everything, the stylesheet too."""
    engine = (
        _engine(templates_dir) if url_fetcher is None else _make_engine(templates_dir, url_fetcher)
    )
    with _weasyprint_errors(what):
        document = engine.html_class(
            string=html,
            base_url=templates_dir.resolve().as_uri() + "/",
            url_fetcher=engine.fetcher,
        )
        pdf: bytes = document.write_pdf(
            stylesheets=[engine.stylesheet],
            font_config=engine.font_config,
            pdf_identifier=identifier,
        )
    return pdf


def render_pdf(
    doc: Mapping[str, Any],
    *,
    url_fetcher: Any | None = None,
    templates_dir: Path = TEMPLATES_DIR,
) -> bytes:
    """The invoice as PDF bytes (deterministic). RenderError if it cannot be rendered."""
    # Whitespace-only text between tags is insignificant in these templates (no <pre>,
    # no inline siblings separated by bare spaces) and costs WeasyPrint a box each.
    html = _BETWEEN_TAGS.sub("><", render_html(doc, templates_dir=templates_dir))
    return html_to_pdf(
        html,
        identifier=pdf_identifier(doc),
        url_fetcher=url_fetcher,
        templates_dir=templates_dir,
        what=f"invoice {display_text(doc.get('id'))}",
    )


def _check_basename(basename: str) -> None:
    if (
        not basename
        or basename.startswith(".")
        or any(c in basename for c in "/\\\x00")
        or len(basename) > 200
    ):
        raise RenderError(f"not a usable file name: {basename!r}")


def invoice_files(doc: Mapping[str, Any], basename: str) -> tuple[bytes, bytes]:
    """(JSON, PDF) of the invoice, both produced in memory (``basename`` checked: a
    RenderError if it is not a usable file name)."""
    _check_basename(basename)
    pdf = render_pdf(doc)
    try:
        text = jsonutil.dumps(doc, indent=2) + "\n"
    except (TypeError, ValueError) as exc:
        raise RenderError(
            f"invoice {display_text(doc.get('id'))}: cannot write JSON: {exc}"
        ) from exc
    return text.encode("utf-8"), pdf


def write_invoice_files(doc: Mapping[str, Any], out_dir: Path, basename: str) -> tuple[Path, Path]:
    """Write ``<basename>.json`` (jsonutil, indent 2) and ``<basename>.pdf`` into
    ``out_dir``, each atomically. Both are produced in memory first: a failed render
    leaves no file, new or partial. Returns (json_path, pdf_path)."""
    data, pdf = invoice_files(doc, basename)
    json_path = out_dir / f"{basename}.json"
    pdf_path = out_dir / f"{basename}.pdf"
    atomic_write_files([(json_path, data), (pdf_path, pdf)])
    return json_path, pdf_path


def publish_invoice_files(doc: Mapping[str, Any], area: FileArea, basename: str) -> tuple[str, str]:
    """:func:`write_invoice_files` into a files area (local disk or object storage:
    one PUT per object, the JSON first). Returns the two locations."""
    data, pdf = invoice_files(doc, basename)
    json_loc, pdf_loc = area.write_many([(f"{basename}.json", data), (f"{basename}.pdf", pdf)])
    return json_loc, pdf_loc


__all__ = [
    "INVOICE_TEMPLATE",
    "STYLESHEET",
    "USER_AGENT_STYLESHEET",
    "html_to_pdf",
    "invoice_files",
    "pdf_identifier",
    "prepare_engine",
    "publish_invoice_files",
    "render_html",
    "render_pdf",
    "write_invoice_files",
]
