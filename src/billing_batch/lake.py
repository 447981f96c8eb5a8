"""The lake: the only module that opens DuckDB and attaches the DuckLake.

* Extensions come from the ``duckdb-ext-*`` wheels' folder, with auto-install and
  auto-load off: nothing is ever downloaded at run time.
* The DuckLake catalog is a SQLite file under ``$BILLING_HOME/lake`` by default (a
  Postgres catalog and an object-storage data path by configuration); the lake is
  attached as ``lake`` and made the default catalog, so the files in ``sql/`` name
  tables without a prefix.
* Writers take ``locks/lake.lock`` (one writer at a time; DuckLake readers are never
  blocked by it). Every write is one DuckLake transaction carrying a commit message,
  so ``ducklake_snapshots()`` says which ingest or run produced each snapshot.
* Analysts get a read-only, sandboxed connection: the lake attached ``READ_ONLY``,
  file access limited to the lake's data folder, configuration locked, and only
  ``SELECT``/``EXPLAIN`` statements accepted.

DuckDB errors are mapped into :class:`~billing_batch.errors.LakeError` here.
"""

from __future__ import annotations

import functools
import hashlib
import importlib.util
import os
import re
from collections.abc import Collection, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import duckdb

from .config import SQL_DIR, Settings
from .errors import InputError, LakeError
from .locking import file_lock

#: The alias the job attaches the lake under (analysts may pick their own).
LAKE = "lake"

# Tables in creation order; each has ``sql/schema/<name>.sql``.
TABLES: tuple[str, ...] = (
    "events",
    "rejects",
    "duplicates",
    "ingest_manifest",
    "usage_daily",
    "gauge_monthly",
    "rollup_log",
)


def extension_directory() -> str:
    """The folder the ``duckdb-ext-*`` wheels install their binaries into."""
    spec = importlib.util.find_spec("duckdb_ext")
    if spec is None or not spec.submodule_search_locations:
        raise LakeError(
            "the DuckDB extension wheels are not installed "
            "(pip install duckdb-ext-ducklake duckdb-ext-sqlite)"
        )
    return str(Path(next(iter(spec.submodule_search_locations))) / "extensions")


def sql_literal(value: str) -> str:
    """Quote an operator-configured value (a path) for the few statements that cannot
    take bound parameters (ATTACH, SET); never used for user input."""
    return "'" + value.replace("'", "''") + "'"


@functools.cache
def load_sql(name: str) -> str:
    """The text of ``sql/<name>.sql``."""
    path = SQL_DIR / f"{name}.sql"
    try:
        return path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise LakeError(f"missing SQL file {path}") from None


def _required_extensions(catalog_url: str, data_path: str) -> list[str]:
    exts = ["ducklake"]
    if catalog_url.startswith("sqlite:"):
        exts.append("sqlite_scanner")
    elif catalog_url.startswith(("postgres:", "postgresql:")):
        exts.append("postgres_scanner")
    if re.match(r"^(s3|gcs|gs|r2|https?|az|abfss)://", data_path):
        exts.append("httpfs")
    return exts


@dataclass(frozen=True)
class Expiry:
    """What :meth:`Lake.expire_snapshots` did (or, ``dry_run``, would do)."""

    #: Snapshot ids expired: time travel to them is no longer possible.
    expired: list[int]
    #: Old snapshot ids kept because they were asked to be (e.g. invoices rated at them).
    kept: list[int]
    #: Data files deleted because no remaining snapshot reads them.
    files_deleted: int
    dry_run: bool
    #: Files a crashed write left in the data path (no snapshot tracks them), deleted.
    orphan_files: list[str] = field(default_factory=list)
    #: Why orphan files were not looked for (e.g. a remote data path), or None.
    orphans_skipped: str | None = None


#: The name DuckLake gives every data and delete file it writes.
_DUCKLAKE_FILE = re.compile(r"^ducklake-[0-9a-f-]{36}(-delete)?\.parquet$")


class Lake:
    """Handle on the DuckLake for one set of settings."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings

    # --- connections -----------------------------------------------------------------
    def _base_connection(self, *, job: bool) -> duckdb.DuckDBPyConnection:
        s = self.settings
        config: dict[str, Any] = {
            "extension_directory": extension_directory(),
            "autoinstall_known_extensions": False,
            "autoload_known_extensions": False,
        }
        if job:
            tmp = s.tmp_dir / "duckdb"
            tmp.mkdir(parents=True, exist_ok=True)
            config["memory_limit"] = s.lake.memory_limit
            config["temp_directory"] = str(tmp)
            config["preserve_insertion_order"] = False
            if s.lake.threads:
                config["threads"] = s.lake.threads
        try:
            con = duckdb.connect(":memory:", config=config)
            # never (a connection setting): a bar drawn by DuckDB would land in the CLI's
            # output and the job's logs
            con.execute("SET enable_progress_bar = false")
            con.execute("SET TimeZone = 'UTC'")
            for ext in _required_extensions(s.catalog_url, s.data_path):
                con.execute(f"LOAD {ext}")
        except duckdb.Error as exc:
            raise LakeError(f"cannot start DuckDB with the lake extensions: {exc}") from exc
        return con

    def connect(
        self,
        *,
        read_only: bool = False,
        create: bool = True,
        snapshot: int | None = None,
    ) -> duckdb.DuckDBPyConnection:
        """A job connection with the lake attached as ``lake`` and selected (``USE``).

        ``create=True`` creates the lake (folders, catalog, tables) when missing;
        ``snapshot=n`` attaches the lake read-only as it was at snapshot ``n`` (time
        travel: the same SQL then reads the past).
        """
        s = self.settings
        if (read_only or snapshot is not None) and create and not self.exists():
            with self.write_lock():
                self.connect().close()  # create it, then attach read-only below
        if not read_only and snapshot is None:
            if create:
                s.ensure_dirs()
            else:
                s.lake_dir.mkdir(parents=True, exist_ok=True)
        if not read_only and snapshot is None:
            self._sqlite_wal()
        con = self._base_connection(job=True)
        if snapshot is not None:
            options = ["READ_ONLY", f"SNAPSHOT_VERSION {int(snapshot)}"]
        elif read_only:
            options = ["READ_ONLY"]
        else:
            options = [f"DATA_PATH {sql_literal(s.data_path)}"]
        try:
            con.execute(
                f"ATTACH {sql_literal('ducklake:' + s.catalog_url)} AS {LAKE} "
                f"({', '.join(options)})"
            )
            con.execute(f"USE {LAKE}")
            if not read_only and snapshot is None:
                con.execute(
                    f"CALL {LAKE}.set_option('parquet_compression', ?)", [s.lake.compression]
                )
                if s.lake.compression == "zstd":
                    con.execute(
                        f"CALL {LAKE}.set_option('parquet_compression_level', ?)",
                        [s.lake.compression_level],
                    )
        except duckdb.Error as exc:
            con.close()
            raise LakeError(f"cannot attach the lake at {s.catalog_url}: {exc}") from exc
        if create and not read_only and snapshot is None:
            self.ensure_schema(con)
        return con

    def _sqlite_wal(self) -> None:
        """Put a SQLite catalog in WAL mode (stored in the file): readers then never block
        the writer's commit, and the writer never blocks readers."""
        url = self.settings.catalog_url
        if not url.startswith("sqlite:"):
            return
        import sqlite3

        path = Path(url.removeprefix("sqlite:"))
        path.parent.mkdir(parents=True, exist_ok=True)
        try:
            db = sqlite3.connect(path, timeout=30)
            try:
                mode = db.execute("PRAGMA journal_mode").fetchone()[0]
                if str(mode).lower() != "wal":
                    db.execute("PRAGMA journal_mode = WAL")
            finally:
                db.close()
        except sqlite3.Error as exc:
            raise LakeError(f"cannot prepare the lake catalog {path}: {exc}") from exc

    def exists(self) -> bool:
        """Whether the lake's catalog exists (always assumed for non-SQLite catalogs)."""
        if self.settings.catalog_url.startswith("sqlite:"):
            return Path(self.settings.catalog_url.removeprefix("sqlite:")).exists()
        return True

    def analyst_connection(self) -> duckdb.DuckDBPyConnection:
        """A sandboxed read-only connection for ad-hoc queries (``billing-batch sql``)."""
        s = self.settings
        catalog_path = s.lake_dir / "catalog.sqlite"
        if s.catalog_url.startswith("sqlite:") and not catalog_path.exists():
            raise LakeError(f"no lake yet at {s.lake_dir}: ingest something first")
        con = self._base_connection(job=False)
        try:
            con.execute(f"ATTACH {sql_literal('ducklake:' + s.catalog_url)} AS billing (READ_ONLY)")
            con.execute("USE billing")
            allowed = [s.data_path] if "://" in s.data_path else [str(Path(s.data_path))]
            con.execute("SET allowed_directories = ?", [allowed])
            con.execute("SET enable_external_access = false")
            con.execute("SET lock_configuration = true")
        except duckdb.Error as exc:
            con.close()
            raise LakeError(f"cannot open the lake read-only: {exc}") from exc
        return con

    # --- schema ----------------------------------------------------------------------
    def ensure_schema(self, con: duckdb.DuckDBPyConnection) -> None:
        """Create the lake tables and views that do not exist yet (idempotent)."""
        existing = {
            r[0]
            for r in con.execute(
                "SELECT table_name FROM duckdb_tables() WHERE database_name = ?", [LAKE]
            ).fetchall()
        }
        missing = [t for t in TABLES if t not in existing]
        views = self._views_to_refresh(con)
        if not missing and not views:
            return
        with (
            self.write_lock(),
            self.transaction(con, "schema", {"created": missing, "views": list(views)}),
        ):
            for table in missing:
                con.execute(load_sql(f"schema/{table}"))
            for name, text in views.items():
                con.execute(text)
                digest = hashlib.sha256(text.encode()).hexdigest()[:16]
                doc = leading_comment(text)
                con.execute(f"COMMENT ON VIEW {name} IS {sql_literal(f'{doc} [sql:{digest}]')}")

    def _views_to_refresh(self, con: duckdb.DuckDBPyConnection) -> dict[str, str]:
        view_dir = SQL_DIR / "views"
        if not view_dir.is_dir():
            return {}
        current = {
            r[0]: (r[1] or "")
            for r in con.execute(
                "SELECT view_name, comment FROM duckdb_views() WHERE database_name = ?", [LAKE]
            ).fetchall()
        }
        out: dict[str, str] = {}
        for path in sorted(view_dir.glob("*.sql")):
            text = path.read_text(encoding="utf-8")
            digest = hashlib.sha256(text.encode()).hexdigest()[:16]
            if f"[sql:{digest}]" not in current.get(path.stem, ""):
                out[path.stem] = text
        return out

    # --- writing ---------------------------------------------------------------------
    @contextmanager
    def write_lock(self, *, timeout: float | None = None) -> Iterator[None]:
        wait = self.settings.ingest.lock_timeout_seconds if timeout is None else timeout
        with file_lock(self.settings.locks_dir / "lake.lock", timeout=wait, what="lake write"):
            yield

    @contextmanager
    def transaction(
        self,
        con: duckdb.DuckDBPyConnection,
        message: str,
        extra: Mapping[str, Any] | None = None,
    ) -> Iterator[duckdb.DuckDBPyConnection]:
        """One DuckLake transaction (one snapshot) with a commit message."""
        import json

        try:
            con.execute("BEGIN TRANSACTION")
            con.execute(
                f"CALL {LAKE}.set_commit_message('billing-batch', ?, extra_info => ?)",
                [message, json.dumps(dict(extra or {}), default=str, sort_keys=True)],
            )
        except duckdb.Error as exc:
            raise LakeError(f"cannot begin a lake transaction: {exc}") from exc
        try:
            yield con
            con.execute("COMMIT")
        except BaseException as exc:
            try:
                con.execute("ROLLBACK")
            except duckdb.Error:
                pass
            if isinstance(exc, duckdb.Error):
                raise LakeError(f"lake write failed ({message}): {exc}") from exc
            raise

    # --- housekeeping ----------------------------------------------------------------
    def expire_snapshots(
        self,
        older_than: datetime,
        *,
        keep: Collection[int] = (),
        dry_run: bool = False,
    ) -> Expiry:
        """Expire the snapshots committed before ``older_than`` except those in ``keep``
        and the current one, then delete the data files no remaining snapshot reads. Under
        the write lock. ``dry_run``: report only.

        Files that no snapshot tracks at all (a crashed write's) are left alone: DuckLake
        finds those by listing the whole data path, so anything else stored there, or a
        data path spelled differently from the catalog's, would be deleted too."""
        keep = set(keep)
        with self.write_lock():
            con = self.connect()
            try:
                current = self.current_snapshot(con)
                old = con.execute(
                    "SELECT snapshot_id FROM ducklake_snapshots(?) "
                    "WHERE snapshot_time < ? ORDER BY snapshot_id",
                    [LAKE, older_than],
                ).fetchall()
                versions = [int(r[0]) for r in old if r[0] != current and r[0] not in keep]
                kept = sorted(int(r[0]) for r in old if r[0] in keep)
                if versions:
                    con.execute(
                        "CALL ducklake_expire_snapshots(?, versions => ?, dry_run => ?)",
                        [LAKE, versions, dry_run],
                    ).fetchall()
                # files of the expired snapshots (a dry run has scheduled none: nothing
                # is listed for them; earlier-scheduled files are)
                unused = con.execute(
                    "CALL ducklake_cleanup_old_files(?, cleanup_all => true, dry_run => ?)",
                    [LAKE, dry_run],
                ).fetchall()
            except duckdb.Error as exc:
                raise LakeError(f"cannot expire lake snapshots: {exc}") from exc
            finally:
                con.close()
        return Expiry(
            expired=versions,
            kept=kept,
            files_deleted=len(unused),
            dry_run=dry_run,
        )

    def delete_orphan_files(
        self, min_age: timedelta, *, dry_run: bool = False, now: datetime | None = None
    ) -> list[str]:
        """Delete the files a crashed write left in the lake's data path; return them.

        A write that dies before its commit (``kill -9``, power loss) leaves the Parquet
        files it had written (complete or truncated) where DuckLake puts them, and no
        snapshot ever tracks them. Under the lake write lock (no write of ours runs), a
        file is deleted only when all of these hold: it is under the data path, its name
        is one DuckLake gives its files (``ducklake-<uuid>[-delete].parquet``: anything
        else stored there is left alone), no row of the catalog names it (data, delete
        and scheduled-for-deletion files of every table, every snapshot), and it was last
        modified more than ``min_age`` ago (older than any write still running, even one
        that would not take our lock). Files are matched by name: DuckLake's names are
        unique, so a data path spelled differently from the catalog's changes nothing.
        Remote data paths (``s3://``...) are not supported: the caller is told why.
        """
        data = self.settings.data_path
        if "://" in data:
            raise LakeError(f"orphan files are only looked for in a local data path, not {data}")
        root = Path(data)
        cutoff = (now or datetime.now().astimezone()).timestamp() - min_age.total_seconds()
        with self.write_lock():
            if not root.is_dir():
                return []
            con = self.connect()
            try:
                tracked = self._tracked_file_names(con)
            finally:
                con.close()
            doomed: list[Path] = []
            for folder, _dirs, files in os.walk(root):
                for name in files:
                    if not _DUCKLAKE_FILE.match(name) or name in tracked:
                        continue
                    path = Path(folder) / name
                    try:
                        if path.lstat().st_mtime < cutoff and path.is_file():
                            doomed.append(path)
                    except FileNotFoundError:
                        continue
            if not dry_run:
                for path in doomed:
                    path.unlink(missing_ok=True)
        return sorted(str(p) for p in doomed)

    @staticmethod
    def _tracked_file_names(con: duckdb.DuckDBPyConnection) -> set[str]:
        """The file names (not paths) of every file the catalog knows, any snapshot."""
        meta = f"__ducklake_metadata_{LAKE}"
        sql = " UNION ALL ".join(
            f"SELECT path FROM {meta}.{table}"
            for table in (
                "ducklake_data_file",
                "ducklake_delete_file",
                "ducklake_files_scheduled_for_deletion",
            )
        )
        try:
            rows = con.execute(sql).fetchall()
        except duckdb.Error as exc:
            raise LakeError(f"cannot list the lake's files: {exc}") from exc
        return {str(r[0]).replace("\\", "/").rsplit("/", 1)[-1] for r in rows}

    # --- reading ---------------------------------------------------------------------
    @staticmethod
    def current_snapshot(con: duckdb.DuckDBPyConnection) -> int:
        # fetchall: a half-read result would keep the catalog locked for other writers
        rows = con.execute(f"SELECT id FROM {LAKE}.current_snapshot()").fetchall()
        return int(rows[0][0]) if rows else 0


def memory_connection() -> duckdb.DuckDBPyConnection:
    """A private in-memory DuckDB (no lake, no files, UTC): for validating usage sent to
    the HTTP API with ingest's own query."""
    try:
        con = duckdb.connect(":memory:", config={"autoinstall_known_extensions": False})
        con.execute("SET enable_progress_bar = false")
        con.execute("SET TimeZone = 'UTC'")
    except duckdb.Error as exc:
        raise LakeError(f"cannot start DuckDB: {exc}") from exc
    return con


def run_query(
    con: duckdb.DuckDBPyConnection,
    sql: str,
    params: Sequence[Any] | Mapping[str, Any] | None = None,
) -> duckdb.DuckDBPyConnection:
    """Execute with bound parameters, mapping DuckDB errors into LakeError."""
    try:
        return con.execute(sql, params) if params is not None else con.execute(sql)
    except duckdb.Error as exc:
        raise LakeError(str(exc)) from exc


_PARAM = re.compile(r"\$([A-Za-z_][A-Za-z0-9_]*)")


def run_sql(
    con: duckdb.DuckDBPyConnection,
    name: str,
    params: Mapping[str, Any] | None = None,
    *,
    prefix: str = "",
) -> duckdb.DuckDBPyConnection:
    """Run ``sql/<name>.sql`` (after ``prefix``, e.g. ``CREATE TEMP TABLE x AS``), binding
    the named parameters the file uses (``$start``...) from ``params``."""
    text = prefix + load_sql(name)
    wanted = set(_PARAM.findall(text))
    given = dict(params or {})
    missing = wanted - given.keys()
    if missing:
        raise LakeError(f"sql/{name}.sql needs parameters {sorted(missing)}")
    return run_query(con, text, {k: given[k] for k in wanted} if wanted else None)


_ALLOWED_ANALYST_STATEMENTS = {"SELECT", "EXPLAIN"}


def check_read_only_sql(con: duckdb.DuckDBPyConnection, sql: str) -> None:
    """Refuse anything but SELECT/EXPLAIN (no COPY, EXPORT, ATTACH, SET, ...)."""
    try:
        statements = con.extract_statements(sql)
    except duckdb.Error as exc:
        raise InputError(f"invalid SQL: {exc}") from exc
    if not statements:
        raise InputError("no SQL statement given")
    for st in statements:
        kind = st.type.name
        if kind not in _ALLOWED_ANALYST_STATEMENTS:
            raise InputError(f"only SELECT queries are allowed here, not {kind}")


def leading_comment(text: str) -> str:
    lines = []
    for line in text.splitlines():
        if line.startswith("--"):
            lines.append(line[2:].strip())
        elif lines:
            break
    return " ".join(x for x in lines if x)
