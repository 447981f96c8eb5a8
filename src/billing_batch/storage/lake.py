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

DuckDB errors are mapped into :class:`~billing_batch._core.errors.LakeError` here.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import os
import random
import re
import threading
import time
from collections import OrderedDict
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import duckdb

from .._core.errors import LakeError
from ..config.settings import SQL_DIR, Settings
from .locking import named_lock
from .s3 import create_duckdb_secret, is_remote
from .sqlfiles import leading_comment, load_sql, sql_literal

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

#: (table, column, type) added after the table's first release: lakes created before get
#: them at their next open (``ensure_schema``).
_ADDED_COLUMNS: tuple[tuple[str, str, str], ...] = (("ingest_manifest", "source_etag", "VARCHAR"),)


#: What DuckLake answers a process that creates the catalog, a table or an option while
#: another process does the same (measured: SQLite "database is locked" at the catalog's
#: creation, "already exists", Postgres "could not serialize access"): worth another try.
_RACE = re.compile(
    r"database is locked|already exists|Transaction conflict|could not serialize", re.IGNORECASE
)
#: Tries to open the lake when such races keep happening (~1 minute in all at most).
_OPEN_ATTEMPTS = 12

#: DuckLake's refusal of an attach whose DATA_PATH differs from the catalog's.
_DATA_PATH_MISMATCH = re.compile(
    r'DATA_PATH parameter "(.*?)" does not match existing data path in the catalog "(.*?)"'
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


def required_extensions(catalog_url: str, data_path: str) -> list[str]:
    exts = ["ducklake"]
    if catalog_url.startswith("sqlite:"):
        exts.append("sqlite_scanner")
    elif catalog_url.startswith(("postgres:", "postgresql:")):
        exts.append("postgres_scanner")
    if re.match(r"^(s3|gcs|gs|r2|https?|az|abfss)://", data_path):
        exts.append("httpfs")
    return exts


class _Instance:
    """A process's DuckDB with the lake attached (see :meth:`Lake.connect`)."""

    def __init__(self, con: duckdb.DuckDBPyConnection, catalog_url: str) -> None:
        self.con = con
        self.catalog_url = catalog_url

    def close(self) -> None:
        try:
            self.con.close()
        except duckdb.Error:  # pragma: no cover - closing is best effort
            pass


#: Open DuckDB instances, per process and lake settings (least recently used first).
_INSTANCES: OrderedDict[tuple[Any, ...], _Instance] = OrderedDict()
_INSTANCES_LOCK = threading.Lock()
_MAX_INSTANCES = 4


def close_connections() -> None:
    """Close this process's lake instances (tests, or before deleting a lake)."""
    with _INSTANCES_LOCK:
        while _INSTANCES:
            _, instance = _INSTANCES.popitem()
            instance.close()


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
            # never a progress bar (it would land in the CLI's output and the job's logs);
            # a connection setting: each cursor sets it too (connect)
            con.execute("SET enable_progress_bar = false")
            con.execute("SET GLOBAL TimeZone = 'UTC'")
            for ext in required_extensions(s.catalog_url, s.data_path):
                con.execute(f"LOAD {ext}")
        except duckdb.Error as exc:
            raise LakeError(f"cannot start DuckDB with the lake extensions: {exc}") from exc
        if is_remote(s.data_path):  # the data path's endpoint, style and credentials
            create_duckdb_secret(con, s.s3)
        return con

    def connect(
        self,
        *,
        read_only: bool = False,
        create: bool = True,
        snapshot: int | None = None,
    ) -> duckdb.DuckDBPyConnection:
        """A job connection with the lake attached as ``lake`` and selected (``USE``).

        Connections are cursors of one DuckDB instance per process and lake (extensions
        loaded and the lake attached once: a connection then costs milliseconds, not half
        a second); close them when done. ``create=True`` creates the lake (folders,
        catalog, tables) when missing; ``snapshot=n`` reads the lake as it was at snapshot
        ``n`` (time travel: the same SQL then reads the past; a DuckDB of its own, see
        :meth:`private_connection`). ``read_only`` documents a
        reader (it never writes); writers take :meth:`write_lock`. The lake is attached
        at this home's data path: a home moved or copied elsewhere is refused (LakeError
        naming ``billing-batch lake relocate``) rather than read where it used to be.
        """
        if not create and not self.exists():
            raise LakeError(f"no lake yet at {self.settings.lake_dir}: ingest something first")
        instance = self._instance(create=create)
        if snapshot is not None:
            return self.private_connection(snapshot=int(snapshot))
        try:
            con = instance.con.cursor()
            con.execute(f"USE {LAKE}")
            con.execute("SET enable_progress_bar = false")
        except duckdb.Error as exc:
            raise LakeError(f"cannot open a lake connection: {exc}") from exc
        return con

    def private_connection(
        self, *, snapshot: int | None = None, override_data_path: bool = False
    ) -> duckdb.DuckDBPyConnection:
        """A DuckDB of its own (not the process's shared instance) with the lake attached
        as ``lake`` and selected; closing it closes the instance (~0.3 s to open).

        For whatever must attach or detach a database: time travel (the lake at
        ``snapshot``, read-only), the state mirror (it attaches its copy of the state
        store), relocation (``override_data_path``: the lake at this home's data path
        although its catalog records another). The shared instance is never attached to
        or detached from once open: DuckDB 1.4 crashes (segfault) when a database is
        detached while another thread's query walks the catalogs (``duckdb_tables()``),
        which the HTTP API did under concurrent requests and its background mirror."""
        s = self.settings
        if not self.exists():
            raise LakeError(f"no lake at {s.lake_dir}")
        options = [f"DATA_PATH {sql_literal(s.data_path)}"]
        if snapshot is not None:
            options += ["READ_ONLY", f"SNAPSHOT_VERSION {int(snapshot)}"]
        if override_data_path:
            options.append("OVERRIDE_DATA_PATH true")
        con = self._base_connection(job=True)
        try:
            con.execute(
                f"ATTACH {sql_literal('ducklake:' + s.catalog_url)} AS {LAKE} "
                f"({', '.join(options)})"
            )
            con.execute(f"USE {LAKE}")
        except duckdb.Error as exc:
            con.close()
            if snapshot is not None:
                raise LakeError(f"cannot read the lake at snapshot {snapshot}: {exc}") from exc
            raise LakeError(f"cannot attach the lake at {s.catalog_url}: {exc}") from exc
        return con

    def _instance(self, *, create: bool) -> _Instance:
        s = self.settings
        key = (
            os.getpid(),
            s.catalog_url,
            s.data_path,
            str(s.tmp_dir),
            s.lake.memory_limit,
            s.lake.threads,
            s.lake.compression,
            s.lake.compression_level,
        )
        with _INSTANCES_LOCK:
            found = _INSTANCES.get(key)
            if found is not None:
                _INSTANCES.move_to_end(key)
                return found
        # opened outside the cache's lock: opening may wait for the lake write lock
        instance = self._open_instance(create=create)
        with _INSTANCES_LOCK:
            found = _INSTANCES.get(key)
            if found is not None:  # another thread opened it meanwhile
                instance.close()
                return found
            _INSTANCES[key] = instance
            while len(_INSTANCES) > _MAX_INSTANCES:
                _, old = _INSTANCES.popitem(last=False)
                old.close()
            return instance

    def _open_instance(self, *, create: bool) -> _Instance:
        """:meth:`_open_instance_once`, again after a short pause when another process
        (another machine: the write lock is per home) was creating the same catalog,
        tables or options at that moment: DuckLake answers "database is locked", "already
        exists" or a transaction conflict, and the next try finds them made."""
        for attempt in range(_OPEN_ATTEMPTS):
            try:
                return self._open_instance_once(create=create)
            except LakeError as exc:
                if attempt + 1 == _OPEN_ATTEMPTS or not _RACE.search(str(exc)):
                    raise
                time.sleep(min(2.0, 0.05 * 2**attempt) * (1 + random.random()))
        raise AssertionError("unreachable")  # pragma: no cover

    def _open_instance_once(self, *, create: bool) -> _Instance:
        """One DuckDB with the lake attached read-write (the schema ensured when
        ``create``). The SQLite catalog is put in WAL mode first, before DuckDB opens it:
        never while this process's DuckDB holds it (two SQLite libraries in one process
        must not open the same file at once)."""
        s = self.settings
        if create:
            s.ensure_dirs()
        else:
            s.lake_dir.mkdir(parents=True, exist_ok=True)
        self._sqlite_wal()
        con = self._base_connection(job=True)
        try:
            con.execute(
                f"ATTACH {sql_literal('ducklake:' + s.catalog_url)} AS {LAKE} "
                f"(DATA_PATH {sql_literal(s.data_path)})"
            )
            self._set_options(con)
        except duckdb.Error as exc:
            con.close()
            moved = _DATA_PATH_MISMATCH.search(str(exc))
            if moved:
                raise LakeError(
                    f"the lake's catalog records its data at {moved.group(2)}, but this home's "
                    f"data path is {s.data_path}: this BILLING_HOME was moved or copied (or "
                    "[lake] data_path changed). Run 'billing-batch lake relocate' to make it "
                    "this home's lake (nothing is re-ingested)"
                ) from exc
            raise LakeError(f"cannot attach the lake at {s.catalog_url}: {exc}") from exc
        instance = _Instance(con, s.catalog_url)
        if create:
            cur = con.cursor()
            try:
                cur.execute(f"USE {LAKE}")
                self.ensure_schema(cur)
            except BaseException:
                instance.close()
                raise
            finally:
                cur.close()
        return instance

    def _set_options(self, con: duckdb.DuckDBPyConnection) -> None:
        """The lake's write options, stored in the catalog: written only when they differ
        (under the write lock), so that opening the lake never writes the catalog."""
        s = self.settings
        wanted: dict[str, str] = {"parquet_compression": s.lake.compression}
        if s.lake.compression == "zstd":
            wanted["parquet_compression_level"] = str(s.lake.compression_level)
        current = {
            str(r[0]): str(r[1])
            for r in con.execute(
                f"SELECT option_name, value FROM {LAKE}.options() WHERE scope = 'GLOBAL'"
            ).fetchall()
        }
        if all(current.get(k) == v for k, v in wanted.items()):
            return
        with self.write_lock():
            for name, value in wanted.items():
                con.execute(f"CALL {LAKE}.set_option(?, ?)", [name, value])

    def _sqlite_wal(self) -> None:
        """Create a SQLite catalog in WAL mode (stored in the file): readers then never
        block the writer's commit, and the writer never blocks readers.

        Only a catalog that does not exist yet, built under a private temporary name and
        linked into place: Python's ``sqlite3`` never opens the catalog itself. DuckDB
        reads and writes it through sqlite_scanner, which carries its own SQLite build,
        and POSIX locks do not exclude each other within one process: two SQLite builds
        on one file do not see each other's locks. A Python connection closing beside an
        open DuckDB one checkpoints and deletes the WAL under it ("database disk image is
        malformed"), and the close drops DuckDB's locks, so another process may write
        beside it (see ``store.mirror_to_lake`` for the state store's side)."""
        url = self.settings.catalog_url
        if not url.startswith("sqlite:"):
            return
        import sqlite3

        path = Path(url.removeprefix("sqlite:"))
        if path.exists():
            return
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.{os.getpid()}-{threading.get_ident()}.tmp")
        try:
            db = sqlite3.connect(tmp, timeout=30)
            try:
                db.execute("PRAGMA journal_mode = WAL")  # writes the header: page 1
            finally:
                db.close()
            try:
                os.link(tmp, path)  # atomic: never replaces a catalog created meanwhile
            except FileExistsError:
                pass
        except (sqlite3.Error, OSError) as exc:
            raise LakeError(f"cannot create the lake catalog {path}: {exc}") from exc
        finally:
            tmp.unlink(missing_ok=True)

    def exists(self) -> bool:
        """Whether the lake's catalog exists (always assumed for non-SQLite catalogs)."""
        if self.settings.catalog_url.startswith("sqlite:"):
            return Path(self.settings.catalog_url.removeprefix("sqlite:")).exists()
        return True

    # --- schema ----------------------------------------------------------------------
    def ensure_schema(self, con: duckdb.DuckDBPyConnection) -> None:
        """Create the lake tables and views that do not exist yet (idempotent)."""
        existing = {
            r[0]
            for r in con.execute(
                "SELECT table_name FROM duckdb_tables() WHERE database_name = ?", [LAKE]
            ).fetchall()
        }
        if (
            all(t in existing for t in TABLES)
            and not self._views_to_refresh(con)
            and not self._columns_to_add(con, existing)
        ):
            return
        with self.write_lock():
            # again under the lock: another process (machine) may have just created them
            self._create_schema(con)

    def _create_schema(self, con: duckdb.DuckDBPyConnection) -> None:
        existing = {
            r[0]
            for r in con.execute(
                "SELECT table_name FROM duckdb_tables() WHERE database_name = ?", [LAKE]
            ).fetchall()
        }
        missing = [t for t in TABLES if t not in existing]
        views = self._views_to_refresh(con)
        added = self._columns_to_add(con, existing)
        if not missing and not views and not added:
            return
        with self.transaction(con, "schema", {"created": missing, "views": list(views)}):
            for table in missing:
                con.execute(load_sql(f"schema/{table}"))
            for table, column, kind in added:
                con.execute(f"ALTER TABLE {table} ADD COLUMN IF NOT EXISTS {column} {kind}")
            for name, text in views.items():
                con.execute(text)
                digest = hashlib.sha256(text.encode()).hexdigest()[:16]
                doc = leading_comment(text)
                con.execute(f"COMMENT ON VIEW {name} IS {sql_literal(f'{doc} [sql:{digest}]')}")

    @staticmethod
    def _columns_to_add(
        con: duckdb.DuckDBPyConnection, existing: set[str]
    ) -> list[tuple[str, str, str]]:
        """Columns added to a table after lakes were created with it (nullable, last)."""
        have = {
            (str(r[0]), str(r[1]))
            for r in con.execute(
                "SELECT table_name, column_name FROM duckdb_columns() WHERE database_name = ?",
                [LAKE],
            ).fetchall()
        }
        return [(t, c, k) for t, c, k in _ADDED_COLUMNS if t in existing and (t, c) not in have]

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
            text = load_sql(f"views/{path.stem}")
            digest = hashlib.sha256(text.encode()).hexdigest()[:16]
            if f"[sql:{digest}]" not in current.get(path.stem, ""):
                out[path.stem] = text
        return out

    # --- writing ---------------------------------------------------------------------
    @contextmanager
    def write_lock(self, *, timeout: float | None = None) -> Iterator[None]:
        wait = self.settings.ingest.lock_timeout_seconds if timeout is None else timeout
        # across machines (a PostgreSQL advisory lock) when the catalog is on PostgreSQL
        with named_lock(self.settings, "lake", timeout=wait, what="lake write"):
            yield

    @contextmanager
    def transaction(
        self,
        con: duckdb.DuckDBPyConnection,
        message: str,
        extra: Mapping[str, Any] | None = None,
    ) -> Iterator[duckdb.DuckDBPyConnection]:
        """One DuckLake transaction (one snapshot) with a commit message."""

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

    # --- reading ---------------------------------------------------------------------
    @staticmethod
    def current_snapshot(con: duckdb.DuckDBPyConnection) -> int:
        # fetchall: a half-read result would keep the catalog locked for other writers
        db = con.execute("SELECT current_database()").fetchall()[0][0]
        rows = con.execute(f"SELECT id FROM {db}.current_snapshot()").fetchall()
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
