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


def test_every_lazy_export_resolves() -> None:
    """Each name the top-level package re-exports is where its table says it is."""
    import importlib

    import billing_batch

    missing = [
        f"{name} -> billing_batch.{module}.{attr}"
        for name, (module, attr) in billing_batch._EXPORTS.items()
        if not hasattr(importlib.import_module(f"billing_batch.{module}"), attr)
    ]
    assert missing == []
    assert sorted(billing_batch.__all__) == sorted(billing_batch._EXPORTS)


def test_the_cli_and_the_api_hold_no_sql() -> None:
    """The CLI and the API parse, call one service and print: no query text, no cursor."""
    import re
    from pathlib import Path

    import billing_batch

    root = Path(billing_batch.__file__).parent
    sql = re.compile(
        r"\bSELECT\b.*\bFROM\b|\b(INSERT INTO|UPDATE \w+ SET|DELETE FROM)\b|\.execute\(|run_sql\("
    )
    found = [
        f"{path.relative_to(root)}:{n}"
        for folder in ("cli", "api")
        for path in sorted((root / folder).glob("*.py"))
        for n, line in enumerate(path.read_text().splitlines(), 1)
        if sql.search(line)
    ]
    assert found == []
