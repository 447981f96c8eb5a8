"""Settings: built-in defaults, then a TOML file, then environment variables.

Precedence (last wins):

1. the built-in defaults below;
2. the TOML file: ``--config PATH``, else ``$BILLING_CONFIG``, else
   ``$BILLING_HOME/billing.toml`` when it exists;
3. environment variables: ``BILLING_HOME`` and ``BILLING_<SECTION>_<KEY>`` for every
   scalar key of a section (``BILLING_LAKE_MEMORY_LIMIT=2GB``,
   ``BILLING_PATHS_LANDING=/srv/landing``, ``BILLING_WEBHOOKS_ALLOW_PRIVATE_ADDRESSES=true``).

Secrets never live in the TOML file: the Stripe key comes from ``STRIPE_API_KEY``,
webhook endpoint secrets from the environment variable each endpoint names.

Every relative path resolves against ``BILLING_HOME`` (itself resolved once, at load
time, to an absolute path), never against whatever the current directory happens to be
later.
"""

from __future__ import annotations

import os
import tomllib
from collections.abc import Mapping
from datetime import date
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, ValidationError

from .._core.errors import ConfigError
from ._env import config_path_of, env_overrides, merge
from ._model import Model
from .metrics import DEFAULT_METRICS, MetricDef, extend_catalogue

#: The repository root (``src/billing_batch/config/settings.py`` → three levels up).
#: ``sql/``, ``templates/`` and ``flows/`` live there.
PROJECT_ROOT = Path(__file__).resolve().parents[3]
SQL_DIR = PROJECT_ROOT / "sql"
TEMPLATES_DIR = PROJECT_ROOT / "templates"


class PathsSettings(Model):
    landing: str = "landing"
    lake: str = "lake"
    rejects: str = "rejects"
    invoices: str = "invoices"
    runs: str = "runs"
    state: str = "state.sqlite"
    locks: str = "locks"
    tmp: str = "tmp"
    #: Landing files that cannot be read at all are moved here, each with a
    #: ``<name>.reason.json`` sidecar saying why.
    quarantine: str = "quarantine"


class LakeSettings(Model):
    #: DuckLake catalog: ``""`` means ``sqlite:<lake>/catalog.sqlite``; or
    #: ``postgres:dbname=billing host=...`` (needs the ``scale`` extra).
    catalog: str = ""
    #: Parquet data path: ``""`` means ``<lake>/data/``; or ``s3://bucket/prefix/``.
    data_path: str = ""
    #: DuckDB memory limit for the job's connections: bounds ingest and rollup RSS.
    memory_limit: str = "700MB"
    #: DuckDB threads; 0 = one per core.
    threads: int = 0
    #: Parquet compression of lake data files.
    compression: Literal["zstd", "snappy", "uncompressed"] = "zstd"
    #: zstd level: 1 writes ~1 CPU second per 10M events faster than 3, files ~5% bigger.
    compression_level: int = 1
    #: The nightly run expires lake snapshots older than ``snapshot_retention_days`` (time
    #: travel reaches back that far; the snapshots invoices were rated at are always kept)
    #: and deletes the data files no remaining snapshot needs.
    expire_snapshots: bool = True
    snapshot_retention_days: int = Field(default=90, ge=0)
    #: Lake housekeeping also deletes the data files a crashed write left behind (in the
    #: data path, tracked by no snapshot) once they are this old: older than any write
    #: still running.
    orphan_min_age_hours: float = Field(default=1.0, ge=0)


class StateSettings(Model):
    #: Where the transactional state lives: ``""`` means the SQLite file ``[paths] state``
    #: (the default); or a SQLAlchemy URL of a PostgreSQL database,
    #: ``postgresql+psycopg://billing@db.internal:5432/billing`` (needs the ``scale``
    #: extra). Never put the password here: libpq reads ``PGPASSWORD`` (or ``~/.pgpass``).
    #: With a PostgreSQL state the nightly run lock is a PostgreSQL advisory lock (it
    #: works across machines); with SQLite it is a file lock under ``[paths] locks``.
    url: str = ""
    #: The read-only PostgreSQL role analysts read the state in place with
    #: (``billing-batch analyst-init``; docs/analysts.md). Unused with SQLite.
    analyst_role: str = "billing_analyst"


class IngestSettings(Model):
    #: Bytes read per chunk: bounds memory whatever the file size.
    chunk_bytes: int = 32 * 1024 * 1024
    #: Longest accepted event id.
    max_id_length: int = 255
    #: Longest accepted line (bytes, newline excluded): a longer line is rejected on its
    #: own ("line too long"), read past without being held in memory.
    max_line_bytes: int = Field(default=1024 * 1024, ge=1024)
    #: Seconds to wait for another ingest's lock before giving up.
    lock_timeout_seconds: float = 600.0


class InvoiceSettings(Model):
    issuer_name: str = "Billing Rail, Inc."
    issuer_address: str = "1 Market Street\nSan Francisco, CA 94105\nUnited States"
    issuer_email: str = "billing@example.com"
    number_prefix: str = "INV"
    #: Parallel PDF rendering processes; 0 = one per core.
    render_processes: int = 0


class PaymentSettings(Model):
    #: Days after the first failed attempt at which a payment is retried.
    dunning_schedule_days: tuple[int, ...] = (1, 3, 7)
    #: Network retries inside one attempt (the SDK's ``max_network_retries``).
    max_network_retries: int = 2
    timeout_seconds: float = 30.0


class WebhookEndpoint(Model):
    id: str
    url: str
    #: Name of the environment variable holding the endpoint's ``whsec_...`` secret(s)
    #: (several, space-separated, during a rotation).
    secret_env: str
    #: Event types delivered to this endpoint; empty = all.
    events: tuple[str, ...] = ()


class WebhookSettings(Model):
    #: Refuse private, loopback and link-local destinations (SSRF guard).
    allow_private_addresses: bool = False
    timeout_seconds: float = 10.0
    #: Give up on an event after this long (about three days).
    max_age_hours: float = 72.0
    endpoints: tuple[WebhookEndpoint, ...] = ()


class ScheduleSettings(Model):
    """The nightly run's schedule: the one place the cron is written. ``billing-batch
    schedule`` builds its deployment from it, and ``prefect.yaml``'s build step reads it
    (``billing_batch.nightly.schedule.deployment_schedule``)."""

    cron: str = "0 2 * * *"
    timezone: str = "UTC"
    deployment_name: str = "nightly"
    #: How long a run without ``PREFECT_API_URL`` waits for Prefect's temporary API server
    #: to answer: Prefect's own 20 s is short of the 35-116 s measured on a loaded 2-core
    #: machine (also sets ``PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS``).
    ephemeral_startup_timeout_seconds: float = Field(default=600.0, gt=0)


class S3Settings(Model):
    """S3-compatible object storage: for an ``s3://`` ``[lake] data_path`` (DuckDB's
    secret) and ``[files] url`` (landing, invoices, rejects, quarantine, run summaries).
    Credentials never live here: ``AWS_ACCESS_KEY_ID``, ``AWS_SECRET_ACCESS_KEY`` and
    ``AWS_SESSION_TOKEN`` come from the environment only."""

    #: ``host:port`` or ``http(s)://host:port`` of an S3-compatible server; ``""`` = AWS.
    #: Env fallback: ``DUCKDB_S3_ENDPOINT``, ``AWS_ENDPOINT_URL``.
    endpoint: str = ""
    #: Env fallback: ``AWS_REGION``, ``AWS_DEFAULT_REGION``.
    region: str = "us-east-1"
    #: ``path`` (``http://host/bucket/key``: SeaweedFS, MinIO, most self-hosted servers) or
    #: ``vhost`` (``http://bucket.host/key``: AWS). Env fallback: ``DUCKDB_S3_URL_STYLE``.
    url_style: Literal["vhost", "path"] = "vhost"
    #: HTTPS to the endpoint; an ``http://`` endpoint turns it off. Env fallback:
    #: ``DUCKDB_S3_USE_SSL``.
    use_ssl: bool = True

    @property
    def scheme_endpoint(self) -> tuple[bool, str]:
        """(use SSL, ``host:port``) with a scheme given in ``endpoint`` winning."""
        ep = self.endpoint.strip().rstrip("/")
        if ep.startswith("http://"):
            return False, ep.removeprefix("http://")
        if ep.startswith("https://"):
            return True, ep.removeprefix("https://")
        return self.use_ssl, ep

    @staticmethod
    def credentials() -> tuple[str, str, str]:
        """(key id, secret, session token) from the environment (``""`` when unset)."""
        return (
            os.environ.get("AWS_ACCESS_KEY_ID", ""),
            os.environ.get("AWS_SECRET_ACCESS_KEY", ""),
            os.environ.get("AWS_SESSION_TOKEN", ""),
        )


class FilesSettings(Model):
    #: ``""``: the files live on local disk at ``[paths]`` (the default). Or an object
    #: store URL (``s3://bucket/prefix``): landing, invoices, rejects, quarantine and run
    #: summaries then live under it, at ``<url>/<[paths] name>`` (``s3://b/p/landing/``).
    url: str = ""


class ScaleSettings(Model):
    #: A Dask scheduler (``tcp://host:8786``): the nightly renders invoices as Prefect
    #: tasks mapped over batches on it (``prefect-dask``). ``""``: in this process's pool.
    dask_address: str = ""
    #: Invoices per rendering task on Dask (a Prefect task costs ~150 ms there).
    render_batch_size: int = Field(default=250, ge=1)
    #: Planned invoices per rating task on Dask (rating costs ~ms per invoice: big batches).
    rate_batch_size: int = Field(default=2000, ge=1)


class ApiKey(Model):
    #: ``sha256:<hex>`` of the key; keys themselves are never stored.
    hash: str
    #: The workspace the key acts for; None for a finance/admin key.
    workspace: str | None = None
    name: str = ""


class ApiSettings(Model):
    host: str = "127.0.0.1"
    port: int = 8000
    keys: tuple[ApiKey, ...] = ()


class Settings(Model):
    home: Path
    config_file: Path | None = None
    paths: PathsSettings = Field(default_factory=PathsSettings)
    lake: LakeSettings = Field(default_factory=LakeSettings)
    state: StateSettings = Field(default_factory=StateSettings)
    ingest: IngestSettings = Field(default_factory=IngestSettings)
    metrics: dict[str, MetricDef] = Field(default_factory=lambda: dict(DEFAULT_METRICS))
    #: Path of the price book TOML; empty = the built-in default price book.
    price_book: str = ""
    invoices: InvoiceSettings = Field(default_factory=InvoiceSettings)
    payments: PaymentSettings = Field(default_factory=PaymentSettings)
    webhooks: WebhookSettings = Field(default_factory=WebhookSettings)
    schedule: ScheduleSettings = Field(default_factory=ScheduleSettings)
    api: ApiSettings = Field(default_factory=ApiSettings)
    s3: S3Settings = Field(default_factory=S3Settings)
    files: FilesSettings = Field(default_factory=FilesSettings)
    scale: ScaleSettings = Field(default_factory=ScaleSettings)

    # --- resolved paths -------------------------------------------------------------
    def _path(self, value: str) -> Path:
        p = Path(value).expanduser()
        return p if p.is_absolute() else self.home / p

    @property
    def landing_dir(self) -> Path:
        return self._path(self.paths.landing)

    @property
    def lake_dir(self) -> Path:
        return self._path(self.paths.lake)

    @property
    def rejects_dir(self) -> Path:
        return self._path(self.paths.rejects)

    @property
    def invoices_dir(self) -> Path:
        return self._path(self.paths.invoices)

    @property
    def runs_dir(self) -> Path:
        return self._path(self.paths.runs)

    @property
    def state_path(self) -> Path:
        return self._path(self.paths.state)

    @property
    def state_on_postgres(self) -> bool:
        """Whether the state store is a PostgreSQL database (``[state] url``)."""
        return self.state.url.startswith(("postgresql", "postgres:"))

    @property
    def catalog_on_postgres(self) -> bool:
        """Whether the lake's DuckLake catalog is a PostgreSQL database."""
        return self.catalog_url.startswith(("postgres:", "postgresql:"))

    @property
    def locks_dir(self) -> Path:
        return self._path(self.paths.locks)

    @property
    def tmp_dir(self) -> Path:
        return self._path(self.paths.tmp)

    @property
    def quarantine_dir(self) -> Path:
        return self._path(self.paths.quarantine)

    @property
    def catalog_url(self) -> str:
        """The DuckLake catalog as it goes after ``ducklake:``."""
        if self.lake.catalog:
            return self.lake.catalog
        return f"sqlite:{self.lake_dir / 'catalog.sqlite'}"

    @property
    def data_path(self) -> str:
        if self.lake.data_path:
            return self.lake.data_path
        return str(self.lake_dir / "data") + "/"

    @property
    def price_book_path(self) -> Path | None:
        return self._path(self.price_book) if self.price_book else None

    def former_home(self, recorded_data_path: str) -> Path | None:
        """The home a lake was created in, from the data path its catalog records, when
        this home keeps its lake inside itself (``[paths] lake`` relative, no ``[lake]
        data_path``): the recorded path minus the same home-relative part
        (``/old/home/lake/data/`` for ``lake/data/`` → ``/old/home``). None otherwise
        (say where it was with ``billing-batch lake relocate --from``)."""
        if self.lake.data_path or "://" in recorded_data_path:
            return None
        try:
            inside = Path(self.data_path).relative_to(self.home)
        except ValueError:
            return None
        recorded = Path(recorded_data_path)
        if not recorded.is_absolute() or recorded.parts[-len(inside.parts) :] != inside.parts:
            return None
        return Path(*recorded.parts[: -len(inside.parts)])

    def rehome(self, recorded: str, former_home: Path) -> str | None:
        """A path recorded under ``former_home`` as the same path under this home (None
        when it was not under the former home: it did not move with it)."""
        try:
            inside = Path(recorded).relative_to(former_home)
        except ValueError:
            return None
        return str(self.home / inside)

    def metric(self, name: str) -> MetricDef:
        from .._core.errors import UsageQueryError

        try:
            return self.metrics[name]
        except KeyError:
            known = ", ".join(sorted(self.metrics))
            raise UsageQueryError(f"unknown metric {name!r} (known: {known})") from None

    @property
    def stripe_api_key(self) -> str | None:
        """Only ever from the environment; never logged."""
        return os.environ.get("STRIPE_API_KEY") or None

    @property
    def stripe_api_base(self) -> str | None:
        return os.environ.get("STRIPE_API_BASE") or None

    @property
    def stripe_webhook_secret(self) -> str | None:
        """The signing secret (``whsec_...``) of Stripe's webhook endpoint
        (``POST /v1/billing/stripe/webhook``): only ever from the environment
        (``STRIPE_WEBHOOK_SECRET``); never logged."""
        return os.environ.get("STRIPE_WEBHOOK_SECRET") or None

    def ensure_dirs(self) -> None:
        for d in (
            self.home,
            self.landing_dir,
            self.lake_dir,
            self.rejects_dir,
            self.invoices_dir,
            self.runs_dir,
            self.locks_dir,
            self.tmp_dir,
        ):
            d.mkdir(parents=True, exist_ok=True)


_SECTIONS: dict[str, type[Model]] = {
    "paths": PathsSettings,
    "lake": LakeSettings,
    "state": StateSettings,
    "ingest": IngestSettings,
    "invoices": InvoiceSettings,
    "payments": PaymentSettings,
    "webhooks": WebhookSettings,
    "schedule": ScheduleSettings,
    "api": ApiSettings,
    "s3": S3Settings,
    "files": FilesSettings,
    "scale": ScaleSettings,
}

#: Conventional variables other S3 tools read, used when ``BILLING_S3_<KEY>`` is unset
#: (the first one set wins): ``DUCKDB_S3_URL_STYLE=path`` is honoured, not ignored.
_ENV_ALIASES: dict[tuple[str, str], tuple[str, ...]] = {
    ("s3", "endpoint"): ("DUCKDB_S3_ENDPOINT", "AWS_ENDPOINT_URL"),
    ("s3", "region"): ("AWS_REGION", "AWS_DEFAULT_REGION"),
    ("s3", "url_style"): ("DUCKDB_S3_URL_STYLE",),
    ("s3", "use_ssl"): ("DUCKDB_S3_USE_SSL",),
}


def load_settings(
    config: str | os.PathLike[str] | None = None,
    *,
    home: str | os.PathLike[str] | None = None,
    env: Mapping[str, str] | None = None,
) -> Settings:
    """Load settings: defaults < TOML file < environment. Raise ConfigError if invalid."""
    env = os.environ if env is None else env
    home_value = home if home is not None else env.get("BILLING_HOME", "billing-data")
    home_path = Path(home_value).expanduser().resolve()

    config_path = config_path_of(config, env, home_path)
    data: dict[str, Any] = {}
    if config_path is not None:
        try:
            with config_path.open("rb") as fh:
                data = tomllib.load(fh)
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"{config_path}: invalid TOML: {exc}") from None
        if "home" in data and home is None and "BILLING_HOME" not in env:
            home_path = (config_path.parent / str(data["home"])).resolve()
        data.pop("home", None)
        if "metrics" in data:
            data["metrics"] = extend_catalogue(data["metrics"])
    data = merge(data, env_overrides(env, _SECTIONS, _ENV_ALIASES))
    try:
        return Settings(home=home_path, config_file=config_path, **data)
    except ValidationError as exc:
        where = str(config_path) if config_path else "settings"
        raise ConfigError(f"{where}: {exc}") from None


def parse_date(text: str, *, what: str = "date") -> date:
    """Parse YYYY-MM-DD strictly (a clear InputError otherwise)."""
    from .._core.errors import InputError

    try:
        if len(text) != 10:
            raise ValueError
        return date.fromisoformat(text)
    except ValueError:
        raise InputError(f"{what}: expected a date as YYYY-MM-DD, got {text!r}") from None


__all__ = [
    "PROJECT_ROOT",
    "SQL_DIR",
    "TEMPLATES_DIR",
    "ApiKey",
    "ApiSettings",
    "FilesSettings",
    "IngestSettings",
    "InvoiceSettings",
    "LakeSettings",
    "PathsSettings",
    "PaymentSettings",
    "S3Settings",
    "ScaleSettings",
    "ScheduleSettings",
    "Settings",
    "WebhookEndpoint",
    "WebhookSettings",
    "load_settings",
    "parse_date",
]
