"""The only way WeasyPrint reads anything: :func:`safe_url_fetcher` serves files inside
the templates folder (resolved, so neither ``..`` nor a symlink escapes) and refuses
everything else: other ``file://`` paths, ``http(s)://`` and every other scheme,
``data:``. A refused fetch fails the render (the PDF engine turns it into a
:class:`~billing_batch.errors.RenderError`): a PDF missing a resource is never published.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit
from urllib.request import url2pathname

from ..config.settings import TEMPLATES_DIR

_MIME = {
    ".css": "text/css",
    ".png": "image/png",
    ".jpg": "image/jpeg",
    ".jpeg": "image/jpeg",
    ".svg": "image/svg+xml",
    ".ttf": "font/ttf",
    ".otf": "font/otf",
    ".woff": "font/woff",
    ".woff2": "font/woff2",
}


class FetchRefusedError(ValueError):
    """A URL the renderer will not fetch."""


@functools.cache
def _fetcher_class() -> type[Any]:
    from weasyprint.urls import URLFetcher, URLFetcherResponse

    class SafeURLFetcher(URLFetcher):  # type: ignore[misc]
        """Serve files inside ``root`` only; refuse every other URL (and record all)."""

        def __init__(self, root: Path) -> None:
            super().__init__(fail_on_errors=True, allowed_protocols=("file",))
            self.root = root.resolve()
            #: Every URL WeasyPrint asked for, in order (tests assert on it).
            self.requested: list[str] = []
            #: The URLs refused.
            self.refused: list[str] = []

        def fetch(self, url: str, headers: Mapping[str, str] | None = None) -> Any:
            self.requested.append(url)
            try:
                path = self._allowed_path(url)
            except FetchRefusedError:
                self.refused.append(url)
                raise
            mime = _MIME.get(path.suffix.lower(), "application/octet-stream")
            return URLFetcherResponse(
                url, body=path.read_bytes(), headers={"Content-Type": mime}, status=200
            )

        def _allowed_path(self, url: str) -> Path:
            parts = urlsplit(url)
            if parts.scheme.lower() != "file" or parts.netloc not in ("", "localhost"):
                raise FetchRefusedError(f"refused (only template files may be used): {url}")
            path = Path(url2pathname(unquote(parts.path))).resolve()
            if not path.is_relative_to(self.root) or not path.is_file():
                raise FetchRefusedError(f"refused (not a file in {self.root}): {url}")
            return path

    return SafeURLFetcher


def safe_url_fetcher(root: Path = TEMPLATES_DIR) -> Any:
    """A WeasyPrint URL fetcher serving only files inside ``root`` (resolved). It keeps
    ``.requested`` and ``.refused`` lists of URLs."""
    return _fetcher_class()(root)


__all__ = ["FetchRefusedError", "safe_url_fetcher"]
