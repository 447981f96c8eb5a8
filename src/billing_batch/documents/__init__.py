"""Invoice documents: the view model (:mod:`.view`), the PDF (:mod:`.pdf`: Jinja2 with
autoescape, WeasyPrint through the safe :mod:`.fetcher`), many at once in worker
processes (:mod:`.pool`), and the copies the CLI and API serve (:mod:`.copies`)."""

from __future__ import annotations

__all__: list[str] = []
