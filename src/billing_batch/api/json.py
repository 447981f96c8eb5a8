"""The API's JSON response: exact decimals through :func:`billing_batch._core.jsonutil.dumps`."""

from __future__ import annotations

from typing import Any

from starlette.responses import JSONResponse as _StarletteJSONResponse

from .._core.jsonutil import dumps


class JSONResponse(_StarletteJSONResponse):
    """``application/json`` written by ``jsonutil.dumps`` (``550``, ``12.34``, never via
    float; dates ``YYYY-MM-DD``; datetimes UTC with ``Z``). A subclass of Starlette's
    ``JSONResponse`` so that FastAPI documents the response models in the schema."""

    def render(self, content: Any) -> bytes:
        return dumps(content).encode("utf-8")
