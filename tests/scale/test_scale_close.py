"""The month close past one machine: the lake's data and every file on SeaweedFS (S3),
the PDFs rendered on a Dask scheduler with two worker processes, the state wherever
``scale_state_env`` says (Postgres when that harness is present); then the same close on
the embedded default. The invoices must be identical: numbers, totals, lines, PDF text.
"""

from __future__ import annotations

import json
import os
import subprocess
from collections.abc import Iterator
from datetime import date
from pathlib import Path
from typing import Any

import pytest

from billing_batch.cli import main as cli_main
from billing_batch.config.settings import Settings, load_settings
from billing_batch.storage import state as store
from billing_batch.storage.files import area
from billing_batch.storage.lake import close_connections
from billing_batch.usage.sample import generate
from tests.scale.dask_fixtures import DaskCluster, dask_cluster, scale_state_env
from tests.scale.s3_fixtures import SeaweedFS, s3_bucket, seaweedfs

__all__ = ["dask_cluster", "s3_bucket", "scale_state_env", "seaweedfs"]

pytestmark = pytest.mark.scale

RUN_DATE = date(2024, 2, 1)
WORKSPACES = 24


@pytest.fixture(scope="module", autouse=True)
def prefect_home(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """Prefect's ephemeral server, results and home inside tmp (not ~/.prefect)."""
    root = tmp_path_factory.mktemp("prefect")
    env = {
        "PREFECT_HOME": str(root / "home"),
        "PREFECT_RESULTS_LOCAL_STORAGE_PATH": str(root / "results"),
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
        "PREFECT_UI_ENABLED": "false",
        "PREFECT_LOGGING_LEVEL": "WARNING",
    }
    old = {k: os.environ.get(k) for k in [*env, "PREFECT_API_URL"]}
    os.environ.update(env)
    os.environ.pop("PREFECT_API_URL", None)
    yield
    for k, v in old.items():
        if v is None:
            os.environ.pop(k, None)
        else:
            os.environ[k] = v


@pytest.fixture(scope="module")
def dask_worker_env(seaweedfs: SeaweedFS) -> dict[str, str]:
    """The workers PUT the PDFs: they get the S3 credentials from their environment."""
    return {**os.environ, **seaweedfs.env()}


def _run(home: Path, env: dict[str, str]) -> dict[str, Any]:
    old = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    try:
        code = cli_main(["--home", str(home), "run", "--date", RUN_DATE.isoformat()])
    finally:
        for k, v in old.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
        close_connections()
    settings = load_settings(env={**os.environ, **env, "BILLING_HOME": str(home)})
    runs = area(settings, "runs")
    if runs.remote:
        (entry,) = runs.list((".json",))
        summary: dict[str, Any] = json.loads(runs.read_bytes(entry.name))
    else:
        (path,) = sorted((home / "runs").glob(f"{RUN_DATE}-*.json"))
        summary = json.loads(path.read_text())
    assert code == 0, summary["failures"]
    return summary


def _pdf_text(data: bytes, scratch: Path) -> str:
    pdf = scratch / "x.pdf"
    pdf.write_bytes(data)
    out = subprocess.run(["pdftotext", str(pdf), "-"], capture_output=True, check=True, text=True)
    # the words in reading order (column padding depends on glyph widths, e.g. of the id)
    return "\n".join(" ".join(line.split()) for line in out.stdout.splitlines() if line.strip())


def _invoices(settings: Settings, scratch: Path) -> dict[str, dict[str, Any]]:
    """number → the state's totals, the published JSON (ids aside) and the PDF text."""
    with store.opened(settings) as con:
        rows = con.execute(
            "SELECT id, number, workspace_id, total, status, json_path, pdf_path FROM invoices "
            "ORDER BY number"
        ).fetchall()
    files = area(settings, "invoices")
    out: dict[str, dict[str, Any]] = {}
    for invoice_id, number, workspace, total, status, json_path, pdf_path in rows:
        assert json_path == files.location(f"{number}.json")
        assert pdf_path == files.location(f"{number}.pdf")
        doc = json.loads(files.read_bytes(f"{number}.json"))
        assert doc.pop("id") == invoice_id
        # the PDF states the invoice id (random per home): the rest must be identical
        text = _pdf_text(files.read_bytes(f"{number}.pdf"), scratch)
        assert f"Invoice id {invoice_id}." in text
        text = text.replace(invoice_id, "inv_<id>")
        out[str(number)] = {
            "workspace": workspace,
            "total": str(total),
            "status": status,
            "doc": doc,
            "pdf_text": text,
        }
    return out


def test_month_close_on_s3_and_dask_matches_the_embedded_default(
    tmp_path: Path,
    seaweedfs: SeaweedFS,
    s3_bucket: str,
    dask_cluster: DaskCluster,
    scale_state_env: dict[str, str],
) -> None:
    logs = tmp_path / "logs"
    generate(logs, workspaces=WORKSPACES, events=30_000, seed=11, bad_lines=2)

    embedded = tmp_path / "embedded"
    (embedded / "landing").mkdir(parents=True)
    for f in sorted(logs.iterdir()):
        os.link(f, embedded / "landing" / f.name)

    scaled = tmp_path / "scaled"
    scale_env = {
        **{k: v for k, v in seaweedfs.settings_env().items()},
        "BILLING_LAKE_DATA_PATH": f"s3://{s3_bucket}/lake/",
        "BILLING_FILES_URL": f"s3://{s3_bucket}/files",
        "BILLING_SCALE_DASK_ADDRESS": dask_cluster.address,
        **scale_state_env,
    }
    scale_settings = load_settings(env={**os.environ, **scale_env, "BILLING_HOME": str(scaled)})
    landing = area(scale_settings, "landing")
    landing.write_many([(f.name, f.read_bytes()) for f in sorted(logs.iterdir())])

    big = _run(scaled, scale_env)
    small = _run(embedded, {})

    docs = big["steps"]["documents"]["counts"]
    assert docs["dask_address"] == dask_cluster.address and docs["batches"] >= 2
    assert docs["rendered"] == big["steps"]["invoices"]["counts"]["invoices_finalized"] > 0
    assert "dask_address" not in small["steps"]["documents"]["counts"]
    rating = big["steps"]["invoices"]["counts"]  # rated on the cluster too
    assert rating["dask_address"] == dask_cluster.address and rating["rating_batches"] >= 2
    assert "rating_batches" not in small["steps"]["invoices"]["counts"]
    for step, key in [
        ("ingest", "accepted"),
        ("ingest", "rejected"),
        ("ingest", "duplicates"),
        ("rollup", "days"),
        ("invoices", "invoices_finalized"),
    ]:
        assert big["steps"][step]["counts"][key] == small["steps"][step]["counts"][key], key

    # nothing of the scaled home's data on its local disk: lake data and files are on S3
    assert not list(scaled.rglob("*.pdf")) and not list(scaled.rglob("*.parquet"))
    assert not list(scaled.rglob("*.jsonl"))

    scratch = tmp_path / "scratch"
    scratch.mkdir()
    got = _invoices(scale_settings, scratch)
    want = _invoices(load_settings(env={**os.environ, "BILLING_HOME": str(embedded)}), scratch)
    assert len(want) >= WORKSPACES // 2
    assert list(got) == list(want)
    for number in want:
        g, w = got[number], want[number]
        assert g["pdf_text"].splitlines() == w["pdf_text"].splitlines(), number
        assert g == w, number
