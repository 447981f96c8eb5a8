"""Processes that share one lake but not one write lock (two machines) create it at once:
every one of them opens it (DuckLake's "database is locked" / "already exists" during the
catalog's and the tables' creation are retried), and the schema is made once."""

from __future__ import annotations

import multiprocessing as mp
from pathlib import Path
from typing import Any

OPENERS = 4


def _open(lake: str, home: str, barrier: Any, results: Any) -> None:
    from billing_batch.config.settings import load_settings
    from billing_batch.storage.lake import Lake

    settings = load_settings(env={"BILLING_HOME": home, "BILLING_PATHS_LAKE": lake})
    barrier.wait()
    try:
        Lake(settings).connect().close()
        results.put("ok")
    except Exception as exc:
        results.put(f"{type(exc).__name__}: {exc}")


def test_lake_created_by_several_processes_at_once(tmp_path: Path) -> None:
    ctx = mp.get_context("spawn")
    barrier = ctx.Barrier(OPENERS)
    results = ctx.Queue()
    lake = tmp_path / "shared-lake"
    procs = [
        ctx.Process(target=_open, args=(str(lake), str(tmp_path / f"m{i}"), barrier, results))
        for i in range(OPENERS)
    ]
    for p in procs:
        p.start()
    outcomes = [results.get(timeout=600) for _ in procs]
    for p in procs:
        p.join(60)
    assert outcomes == ["ok"] * OPENERS

    from billing_batch.config.settings import load_settings
    from billing_batch.storage.lake import TABLES, Lake, close_connections

    settings = load_settings(
        env={"BILLING_HOME": str(tmp_path / "m0"), "BILLING_PATHS_LAKE": str(lake)}
    )
    con = Lake(settings).connect(create=False)
    try:
        tables = con.execute(
            "SELECT table_name, count(*) FROM duckdb_tables() WHERE database_name = 'lake' "
            "GROUP BY ALL"
        ).fetchall()
    finally:
        con.close()
        close_connections()
    assert sorted(tables) == sorted((t, 1) for t in TABLES)
