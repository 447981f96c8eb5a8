"""Relocating a home: a ``BILLING_HOME`` moved, copied (``cp -a``) or restored elsewhere
becomes this home's again, without ingesting anything twice.

What records an absolute path, and what :func:`relocate_home` does with it:

* the DuckLake catalog records its data path (``ducklake_metadata.data_path``). Every
  attach names this home's data path (``lake.Lake.connect``), so a moved home is
  refused with a message naming ``billing-batch lake relocate`` instead of reading the
  files where they used to be. Relocation records this home's data path; data files,
  tables and schemas are recorded relative to it (relocation refuses a lake with an
  absolute file path, and one whose files are not all under this home's data path);
* ``ingest_manifest.source_file`` is how the ingest knows which landing files it has
  read (``ingest.new_landing_files`` matches path and size): rewritten to the same path
  under this home (``sql/relocate_manifest.sql``), so nothing is ingested again;
* ``invoices.json_path`` / ``pdf_path`` in the state store: rewritten the same way;
* ``events`` / ``rejects`` / ``duplicates.source_file`` are lineage (where a line was
  read from, when it was read) and stay as they were.

Order, so that a crash anywhere and a rerun complete it: the manifest, then the state
store's paths, then the catalog's data path last (the commit point: until it changes,
a rerun finds the former home again and redoes what is left; each step is idempotent).
It holds the run lock and the lake write lock throughout.
"""

from __future__ import annotations

import logging
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import duckdb

from .._core.errors import InputError, LakeError
from ..config.settings import Settings
from ..storage import mirror
from . import state as store
from .lake import LAKE, Lake
from .sqlfiles import run_query, run_sql

log = logging.getLogger(__name__)

_METADATA = f"__ducklake_metadata_{LAKE}"


@dataclass(frozen=True)
class Relocation:
    """What :func:`relocate_home` did (or, ``dry_run``, would do)."""

    home: str
    data_path: str
    #: The data path the catalog recorded before.
    recorded_data_path: str
    #: The home the lake was created in (None when already this home's).
    former_home: str | None
    #: False: the lake was already this home's; nothing to do.
    moved: bool
    #: Data files the catalog lists, all found under this home's data path.
    data_files: int
    #: ingest_manifest rows that now name this home's landing files.
    manifest_rows: int
    #: Invoices whose JSON/PDF paths now name this home's files.
    invoice_paths: int
    dry_run: bool

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def _recorded_data_path(con: duckdb.DuckDBPyConnection) -> str:
    rows = run_query(
        con, f"SELECT value FROM {_METADATA}.ducklake_metadata WHERE key = 'data_path'"
    ).fetchall()
    if not rows:
        raise LakeError("the lake's catalog records no data path")
    return str(rows[0][0])


def _check_files(con: duckdb.DuckDBPyConnection, data_path: str) -> int:
    """Every path the catalog records is relative, and every data file of every table
    is under ``data_path``: the number of files."""
    absolute = run_query(
        con,
        "SELECT sum(n) FROM ("
        f"  SELECT count(*) AS n FROM {_METADATA}.ducklake_schema WHERE NOT path_is_relative"
        f"  UNION ALL SELECT count(*) FROM {_METADATA}.ducklake_table WHERE NOT path_is_relative"
        f"  UNION ALL SELECT count(*) FROM {_METADATA}.ducklake_data_file"
        "   WHERE NOT path_is_relative"
        f"  UNION ALL SELECT count(*) FROM {_METADATA}.ducklake_delete_file"
        "   WHERE NOT path_is_relative)",
    ).fetchone()
    if absolute and absolute[0]:
        raise LakeError(
            f"the lake's catalog records {absolute[0]} absolute file path(s): they would not "
            "move with the home; relocation only moves lakes whose files are all under their "
            "data path"
        )
    if "://" in data_path:
        return 0  # object storage: the files did not move with the home
    tables = [
        r[0]
        for r in run_query(
            con, "SELECT table_name FROM duckdb_tables() WHERE database_name = ?", [LAKE]
        ).fetchall()
    ]
    files: list[str] = []
    for table in tables:
        for data_file, delete_file in run_query(
            con, "SELECT data_file, delete_file FROM ducklake_list_files(?, ?)", [LAKE, table]
        ).fetchall():
            files.extend(f for f in (data_file, delete_file) if f)
    missing = [f for f in files if not Path(f).is_file()]
    if missing:
        raise LakeError(
            f"{len(missing)} of the {len(files)} data file(s) the lake's catalog lists are "
            f"not under {data_path} (e.g. {missing[0]}): copy or restore the whole home, "
            "lake/data included, then relocate"
        )
    return len(files)


def _rehome_invoice_paths(settings: Settings, former: Path, *, dry_run: bool) -> int:
    changed = 0
    with store.opened(settings) as con, store.transaction(con):
        rows = store.query(con, "invoicing/invoice_file_paths").fetchall()
        for invoice_id, json_path, pdf_path in rows:
            new_json = settings.rehome(json_path, former) if json_path else None
            new_pdf = settings.rehome(pdf_path, former) if pdf_path else None
            if new_json is None and new_pdf is None:
                continue
            changed += 1
            if not dry_run:
                store.query(
                    con,
                    "invoicing/set_invoice_files",
                    {
                        "id": invoice_id,
                        "json_path": new_json or json_path,
                        "pdf_path": new_pdf or pdf_path,
                    },
                )
    return changed


def relocate_home(
    settings: Settings, *, former_home: Path | None = None, dry_run: bool = False
) -> Relocation:
    """Make a moved, copied or restored home's lake and records this home's (see the
    module docstring). ``former_home``: where the home was (default: worked out from the
    data path the catalog records). Nothing to do when the catalog already records this
    home's data path. Raises InputError (no lake; former home unknown), LakeError (files
    missing, absolute paths), LockedError (a run or a lake write in progress)."""
    from ..nightly.steps import run_lock

    lake = Lake(settings)
    if not lake.exists():
        raise InputError(f"no lake at {settings.lake_dir}: nothing to relocate")
    with run_lock(settings), lake.write_lock():
        con = lake.private_connection(override_data_path=True)
        try:
            recorded = _recorded_data_path(con)
            if recorded == settings.data_path:
                return Relocation(
                    home=str(settings.home),
                    data_path=settings.data_path,
                    recorded_data_path=recorded,
                    former_home=None,
                    moved=False,
                    data_files=0,
                    manifest_rows=0,
                    invoice_paths=0,
                    dry_run=dry_run,
                )
            former = _former_home(settings, recorded, former_home)
            files = _check_files(con, settings.data_path)
            manifest_rows = _relocate_manifest(lake, con, former, settings.home, dry_run)
        finally:
            con.close()
        invoice_paths = _rehome_invoice_paths(settings, former, dry_run=dry_run)
        if not dry_run:
            _record_data_path(lake, settings.data_path)  # last: the commit point
    if not dry_run:
        log.warning("relocated the home from %s to %s", former, settings.home)
        mirror.mirror_to_lake(settings, reason=f"relocate home from {former}")
    return Relocation(
        home=str(settings.home),
        data_path=settings.data_path,
        recorded_data_path=recorded,
        former_home=str(former),
        moved=True,
        data_files=files,
        manifest_rows=manifest_rows,
        invoice_paths=invoice_paths,
        dry_run=dry_run,
    )


def _former_home(settings: Settings, recorded: str, given: Path | None) -> Path:
    """Where the home was: ``given``, else the home whose default layout ``recorded`` is."""
    former = given.expanduser().resolve() if given else settings.former_home(recorded)
    if former is None:
        raise InputError(
            f"the lake's catalog records its data at {recorded}, which is not the "
            f"default layout of a home: say where the home was "
            "(billing-batch lake relocate --from OLD_HOME)"
        )
    if former == settings.home:
        raise InputError(f"{former} is this home: nothing to relocate from")
    return former


def _relocate_manifest(
    lake: Lake, con: duckdb.DuckDBPyConnection, former: Path, home: Path, dry_run: bool
) -> int:
    """Rewrite the ingest manifest's paths under ``former`` to ``home`` (one lake
    transaction, so landing files are not ingested again); returns the rows concerned."""
    params = {"old_prefix": f"{former}/", "new_prefix": f"{home}/"}
    manifest = run_query(
        con,
        "SELECT count(*) FROM ingest_manifest WHERE starts_with(source_file, ?)",
        [params["old_prefix"]],
    ).fetchone()
    rows = int(manifest[0]) if manifest else 0
    if not dry_run and rows:
        extra = {"from": str(former), "to": str(home)}
        with lake.transaction(con, "relocate home", extra):
            run_sql(con, "relocate_manifest", params)
    return rows


def _record_data_path(lake: Lake, data_path: str) -> None:
    """Record this home's data path in the catalog (the relocation's commit point)."""
    con = lake.private_connection(override_data_path=True)
    try:
        run_query(
            con,
            f"UPDATE {_METADATA}.ducklake_metadata SET value = ? WHERE key = 'data_path'",
            [data_path],
        )
    finally:
        con.close()


__all__ = ["Relocation", "relocate_home"]
