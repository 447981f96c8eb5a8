"""S3 settings, turned into what each client needs: DuckDB's secret (for an ``s3://``
lake data path) and fsspec/s3fs's options (for the files layer, :mod:`.files`).

One home for the mapping, so the lake and the files always reach the same endpoint with
the same URL style. Credentials come from the environment only (``AWS_ACCESS_KEY_ID``,
``AWS_SECRET_ACCESS_KEY``, ``AWS_SESSION_TOKEN``), go straight into the secret or the
client, and are never logged nor part of an error message.
"""

from __future__ import annotations

from typing import Any

import duckdb

from .._core.errors import LakeError
from ..config.settings import S3Settings

#: The name of the secret the job's DuckDB instances hold (one per instance).
SECRET_NAME = "billing_s3"


def is_remote(url: str) -> bool:
    """Whether ``url`` names an object store (``s3://...``) rather than local disk."""
    return url.startswith(("s3://", "s3a://"))


def duckdb_secret_params(s3: S3Settings) -> dict[str, Any]:
    """The ``CREATE SECRET (TYPE s3, ...)`` options, credentials from the environment."""
    use_ssl, endpoint = s3.scheme_endpoint
    key_id, secret, token = s3.credentials()
    params: dict[str, Any] = {
        "REGION": s3.region,
        "URL_STYLE": s3.url_style,
        "USE_SSL": use_ssl,
    }
    if endpoint:
        params["ENDPOINT"] = endpoint
    if key_id:
        params["KEY_ID"] = key_id
        params["SECRET"] = secret
    if token:
        params["SESSION_TOKEN"] = token
    return params


#: Largest object DuckDB writes to S3: it sizes each multipart part as this / 10,000
#: parts, and keeps one part in memory per file being written. DuckDB's default (800 GB:
#: 80 MB parts) made a partitioned write (one file per day: 31 at once) exceed the job's
#: 700 MB memory limit; 50 GB gives ~5 MB parts, S3's minimum part size.
S3_MAX_OBJECT = "50GB"


def create_duckdb_secret(con: duckdb.DuckDBPyConnection, s3: S3Settings) -> None:
    """Create (or replace) this connection's S3 secret from the settings, and size its
    uploads (:data:`S3_MAX_OBJECT`). A temporary secret: it lives in this DuckDB
    instance's memory, never on disk."""
    try:
        con.execute(f"SET GLOBAL s3_uploader_max_filesize = {_literal(S3_MAX_OBJECT)}")
    except duckdb.Error as exc:
        raise LakeError(f"cannot configure DuckDB's S3 uploads: {exc}") from exc
    params = duckdb_secret_params(s3)
    options = ", ".join(
        f"{name} {_literal(value)}" for name, value in params.items() if name != "USE_SSL"
    )
    use_ssl = "true" if params["USE_SSL"] else "false"
    sql = (
        f"CREATE OR REPLACE TEMPORARY SECRET {SECRET_NAME} (TYPE s3, {options}, USE_SSL {use_ssl})"
    )
    try:
        con.execute(sql)
    except duckdb.Error as exc:
        # the statement holds the credentials: name the endpoint only
        raise LakeError(
            f"cannot create the S3 secret for endpoint {params.get('ENDPOINT', 'AWS')!r}: "
            f"{type(exc).__name__}"
        ) from None


def _literal(value: Any) -> str:
    """A quoted SQL string (secrets take no bound parameters); operator configuration
    and the environment only, never user input."""
    return "'" + str(value).replace("'", "''") + "'"


def fsspec_options(s3: S3Settings) -> dict[str, Any]:
    """``s3fs.S3FileSystem`` keyword arguments for the same endpoint and style."""
    use_ssl, endpoint = s3.scheme_endpoint
    key_id, secret, token = s3.credentials()
    client: dict[str, Any] = {"region_name": s3.region}
    style = "path" if s3.url_style == "path" else "virtual"
    config: dict[str, Any] = {"s3": {"addressing_style": style}}
    opts: dict[str, Any] = {
        "client_kwargs": client,
        "config_kwargs": config,
        "use_ssl": use_ssl,
        # never a cached listing: a file that appears must be seen by the next run
        "use_listings_cache": False,
        "skip_instance_cache": True,
    }
    if endpoint:
        client["endpoint_url"] = f"{'https' if use_ssl else 'http'}://{endpoint}"
    if key_id:
        opts["key"] = key_id
        opts["secret"] = secret
        if token:
            opts["token"] = token
    else:
        opts["anon"] = False
    return opts


__all__ = [
    "S3_MAX_OBJECT",
    "SECRET_NAME",
    "create_duckdb_secret",
    "duckdb_secret_params",
    "fsspec_options",
    "is_remote",
]
