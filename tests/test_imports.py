"""The package's import weight: the HTTP SDK and the top-level package stay light."""

from __future__ import annotations

import subprocess
import sys

HEAVY = ("duckdb", "stripe", "weasyprint", "prefect", "polars", "pyarrow", "jinja2", "fastapi")


def _loaded_after(statement: str) -> list[str]:
    code = (
        f"import sys; {statement}; "
        f"print(' '.join(sorted({{m.split('.')[0] for m in sys.modules}} & set({HEAVY!r}))))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return out.stdout.split()


def test_the_http_client_imports_nothing_heavy() -> None:
    assert _loaded_after("import billing_batch.client") == []


def test_the_package_imports_lazily() -> None:
    assert _loaded_after("import billing_batch") == []
    assert "duckdb" in _loaded_after("import billing_batch; billing_batch.get_usage")
