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

import functools
import hashlib
import importlib.util
import json
import os
import random
import re
import threading
import time
from collections import OrderedDict
from collections.abc import Collection, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import duckdb

from .._core.errors import InputError, LakeError
from ..config.settings import SQL_DIR, Settings
from .locking import file_lock
from .s3 import create_duckdb_secret, is_remote

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


def sql_literal(value: str) -> str:
    """Quote an operator-configured value (a path) for the few statements that cannot
    take bound parameters (ATTACH, SET); never used for user input."""
    return "'" + value.replace("'", "''") + "'"


#: A line ``-- include: <name>`` in a SQL file stands for the text of ``sql/<name>.sql``.
_INCLUDE = re.compile(r"^[ \t]*-- include: ([\w/]+)[ \t]*$", re.MULTILINE)


@functools.cache
def load_sql(name: str) -> str:
    """The text of ``sql/<name>.sql``, each ``-- include: <other>`` line replaced by the
    text of ``sql/<other>.sql``: a query that several files share has one home (the
    gauge's, ``gauge_quantities``, in ``usage_period`` and the ``usage_monthly`` view)."""
    path = SQL_DIR / f"{name}.sql"
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise LakeError(f"missing SQL file {path}") from None
    return _INCLUDE.sub(lambda m: load_sql(m.group(1)).rstrip("\n"), text)


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


class _Instance:
    """A process's DuckDB with the lake attached (see :meth:`Lake.connect`)."""

    def __init__(self, con: duckdb.DuckDBPyConnection, catalog_url: str) -> None:
        self.con = con
        self.catalog_url = catalog_url
        self._snapshots: OrderedDict[int, None] = OrderedDict()
        self._lock = threading.Lock()

    def at_snapshot(self, snapshot: int) -> str:
        """The alias of the lake attached read-only at ``snapshot`` (attached once; the
        least recently used of more than :data:`_MAX_SNAPSHOTS` is detached)."""
        alias = f"{LAKE}_at_{snapshot}"
        with self._lock:
            if snapshot in self._snapshots:
                self._snapshots.move_to_end(snapshot)
                return alias
            try:
                self.con.execute(
                    f"ATTACH {sql_literal('ducklake:' + self.catalog_url)} AS {alias} "
                    f"(READ_ONLY, SNAPSHOT_VERSION {snapshot})"
                )
            except duckdb.Error as exc:
                raise LakeError(f"cannot read the lake at snapshot {snapshot}: {exc}") from exc
            self._snapshots[snapshot] = None
            while len(self._snapshots) > _MAX_SNAPSHOTS:
                old, _ = self._snapshots.popitem(last=False)
                try:
                    self.con.execute(f"DETACH {LAKE}_at_{old}")
                except duckdb.Error:  # still in use by a cursor: it stays attached
                    pass
        return alias

    def close(self) -> None:
        try:
            self.con.close()
        except duckdb.Error:  # pragma: no cover - closing is best effort
            pass


#: Open DuckDB instances, per process and lake settings (least recently used first).
_INSTANCES: OrderedDict[tuple[Any, ...], _Instance] = OrderedDict()
_INSTANCES_LOCK = threading.Lock()
_MAX_INSTANCES = 4
#: Snapshots (time travel) kept attached per instance.
_MAX_SNAPSHOTS = 8


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
            for ext in _required_extensions(s.catalog_url, s.data_path):
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
        ``n`` (time travel: the same SQL then reads the past). ``read_only`` documents a
        reader (it never writes); writers take :meth:`write_lock`. The lake is attached
        at this home's data path: a home moved or copied elsewhere is refused (LakeError
        naming ``billing-batch lake relocate``) rather than read where it used to be.
        """
        if not create and not self.exists():
            raise LakeError(f"no lake yet at {self.settings.lake_dir}: ingest something first")
        instance = self._instance(create=create)
        alias = LAKE if snapshot is None else instance.at_snapshot(int(snapshot))
        try:
            con = instance.con.cursor()
            con.execute(f"USE {alias}")
            con.execute("SET enable_progress_bar = false")
        except duckdb.Error as exc:
            raise LakeError(f"cannot open a lake connection: {exc}") from exc
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

    def relocation_connection(self) -> duckdb.DuckDBPyConnection:
        """A private DuckDB (not the process's shared instance) with the lake attached as
        ``lake`` at this home's data path even though its catalog records another
        (``OVERRIDE_DATA_PATH``, for this connection only): for ``relocation`` alone, under
        the write lock. Close it when done."""
        s = self.settings
        if not self.exists():
            raise LakeError(f"no lake at {s.lake_dir}")
        con = self._base_connection(job=True)
        try:
            con.execute(
                f"ATTACH {sql_literal('ducklake:' + s.catalog_url)} AS {LAKE} "
                f"(DATA_PATH {sql_literal(s.data_path)}, OVERRIDE_DATA_PATH true)"
            )
            con.execute(f"USE {LAKE}")
        except duckdb.Error as exc:
            con.close()
            raise LakeError(f"cannot attach the lake at {s.catalog_url}: {exc}") from exc
        return con

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

    def analyst_connection(self) -> duckdb.DuckDBPyConnection:
        """A sandboxed read-only connection for ad-hoc queries (``billing-batch sql``):
        :func:`analyst_session_sql` run on a fresh in-memory DuckDB. Run every query
        through :func:`check_read_only_sql` (``analyst.analyst_query`` does): the settings
        alone do not close the extensions' own file access (see ``sqlguard``)."""
        s = self.settings
        catalog_path = s.lake_dir / "catalog.sqlite"
        if s.catalog_url.startswith("sqlite:") and not catalog_path.exists():
            raise LakeError(f"no lake yet at {s.lake_dir}: ingest something first")
        try:
            con = duckdb.connect(":memory:")
        except duckdb.Error as exc:
            raise LakeError(f"cannot start DuckDB: {exc}") from exc
        try:
            for statement in analyst_session_sql(s):
                if is_remote(s.data_path) and statement.startswith("ATTACH"):
                    create_duckdb_secret(con, s.s3)  # in memory, never printed
                con.execute(statement)
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
        added = self._columns_to_add(con, existing)
        if not missing and not views and not added:
            return
        with (
            self.write_lock(),
            self.transaction(con, "schema", {"created": missing, "views": list(views)}),
        ):
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


def analyst_session_sql(settings: Settings, *, alias: str = "billing") -> list[str]:
    """The statements that make a fresh DuckDB 1.4 session an analyst's view of the lake:
    the extensions from the ``duckdb-ext-*`` wheels (nothing downloaded), the lake
    attached read-only as ``alias`` and selected, UTC, then file access limited to the
    lake's data path, no external access (no other file, COPY TO, ATTACH, INSTALL/LOAD)
    and the configuration locked. ``billing-batch analyst-init`` prints them for any
    DuckDB session; :meth:`Lake.analyst_connection` runs them.

    What they cannot close: an extension's own file access (``sqlite_scan``,
    ``sqlite_attach``, ``ATTACH ... (TYPE sqlite)``: see ``sqlguard``), which
    :func:`check_read_only_sql` refuses."""
    s = settings
    data = s.data_path if s.data_path.endswith("/") else s.data_path + "/"
    statements = [
        f"SET extension_directory = {sql_literal(extension_directory())}",
        "SET autoinstall_known_extensions = false",
        "SET autoload_known_extensions = false",
    ]
    statements += [f"LOAD {ext}" for ext in _required_extensions(s.catalog_url, s.data_path)]
    statements += [
        f"ATTACH {sql_literal('ducklake:' + s.catalog_url)} AS {alias} (READ_ONLY)",
        f"USE {alias}",
        "SET TimeZone = 'UTC'",
        f"SET allowed_directories = [{sql_literal(data)}]",
        "SET enable_external_access = false",
        "SET lock_configuration = true",
    ]
    return statements


_ALLOWED_ANALYST_STATEMENTS = {"SELECT", "EXPLAIN"}
_EXPLAIN = re.compile(r"^\s*EXPLAIN(\s+ANALY[SZ]E)?\s+", re.IGNORECASE)


def check_read_only_sql(con: duckdb.DuckDBPyConnection, sql: str) -> None:
    """Refuse anything but a SELECT (or EXPLAIN of one) that reads the lake: no COPY,
    EXPORT, ATTACH, SET, PRAGMA, ...; no table function that reaches another file or
    database (``read_csv``, ``sqlite_scan``, ``sqlite_attach``, ``postgres_scan``,
    ``glob``...) and nothing that runs SQL text unseen (``query()``): see ``sqlguard``.
    InputError says why."""
    from .sqlguard import refusal

    try:
        statements = con.extract_statements(sql)
    except duckdb.Error as exc:
        raise InputError(f"invalid SQL: {exc}") from exc
    if not statements:
        raise InputError("no SQL statement given")
    table_functions: set[str] | None = None
    for st in statements:
        kind = st.type.name
        if kind not in _ALLOWED_ANALYST_STATEMENTS:
            raise InputError(f"only SELECT queries are allowed here, not {kind}")
        if table_functions is None:
            table_functions = {
                r[0]
                for r in run_query(
                    con,
                    "SELECT DISTINCT lower(function_name) FROM duckdb_functions() "
                    "WHERE function_type IN ('table', 'table_macro')",
                ).fetchall()
            }
        text = _EXPLAIN.sub("", st.query, count=1) if kind == "EXPLAIN" else st.query
        try:
            rows = con.execute("SELECT json_serialize_sql(?)", [text]).fetchall()
            tree = json.loads(rows[0][0])
        except (duckdb.Error, ValueError, IndexError) as exc:
            raise InputError(f"this statement cannot be checked: {exc}") from exc
        reason = refusal(tree, table_functions)
        if reason:
            raise InputError(f"refused: {reason}")


def leading_comment(text: str) -> str:
    lines = []
    for line in text.splitlines():
        if line.startswith("--"):
            lines.append(line[2:].strip())
        elif lines:
            break
    return " ".join(x for x in lines if x)
