"""A realistic, seeded month of usage logs (for the demo, the tests and the benchmarks).

* workspaces are Zipf-skewed: a few big ones, a long tail;
* all four default metrics: ``api_calls`` (batched counts), ``contracts``,
  ``kyc_checks``, and ``storage`` as one or two daily gauge readings per workspace (GB,
  three decimals, growing over the month);
* one file per UTC day (``usage-YYYY-MM-DD.jsonl``, every third one gzipped), lines
  in arrival order; a share of timestamps carry a non-UTC offset, some crossing midnight;
* some retries (the same ``id`` sent again, usually identical, sometimes with a
  different payload: a conflict), some id-less lines, and a few bad lines.

Everything is vectorised (numpy + polars); the same seed gives the same bytes.
"""

from __future__ import annotations

import calendar
import gzip
import os
from dataclasses import dataclass
from datetime import date
from pathlib import Path

import numpy as np
import polars as pl

from .._core.files import atomic_write_bytes

_BAD_LINES = (
    "this is not json",
    '{"id": "bad_1", "workspaceId": "ws_0001", "metric": "api_calls", "quantity": 5',
    '["an", "array"]',
    '{"id": "bad_2", "workspaceId": "", "metric": "api_calls", "quantity": 1, '
    '"timestamp": "{day}T10:00:00Z"}',
    '{"id": "bad_3", "workspaceId": "ws_0002", "metric": "bandwidth", "quantity": 1, '
    '"timestamp": "{day}T10:00:00Z"}',
    '{"id": "bad_4", "workspaceId": "ws_0003", "metric": "api_calls", "quantity": -4, '
    '"timestamp": "{day}T10:00:00Z"}',
    '{"id": "bad_5", "workspaceId": "ws_0004", "metric": "contracts", "quantity": 2.5, '
    '"timestamp": "{day}T10:00:00Z"}',
    '{"id": "bad_6", "workspaceId": "ws_0005", "metric": "api_calls", "quantity": 10, '
    '"timestamp": "{day}T10:00:00"}',
    '{"id": "bad_7", "workspaceId": "ws_0006", "metric": "kyc_checks", "quantity": "3", '
    '"timestamp": "{day}T10:00:00Z"}',
    '{"id": "bad_8", "workspaceId": "ws_0007", "metric": "api_calls", "timestamp": '
    '"{day}T10:00:00Z"}',
)


@dataclass(frozen=True)
class SampleReport:
    files: list[str]
    events: int
    lines: int
    duplicate_lines: int
    bad_lines: int
    workspaces: int


def _month_bounds(month: str) -> tuple[date, int]:
    try:
        year, mon = (int(x) for x in month.split("-"))
        first = date(year, mon, 1)
    except ValueError:
        from .._core.errors import InputError

        raise InputError(f"month: expected YYYY-MM, got {month!r}") from None
    return first, calendar.monthrange(year, mon)[1]


def generate(
    out_dir: str | os.PathLike[str],
    *,
    month: str = "2024-01",
    workspaces: int = 50,
    events: int = 1_000_000,
    seed: int = 42,
    retry_rate: float = 0.003,
    idless_rate: float = 0.01,
    bad_lines: int = 10,
    gzip_every: int = 3,
) -> SampleReport:
    """Write a sample month of usage logs into ``out_dir``; return what was written.

    One seeded generator drives every draw, in a fixed order (storage readings, usage
    events, line details, retries, bad lines), so a seed always writes the same files."""
    first, ndays = _month_bounds(month)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    df = _events(rng, first, ndays, workspaces, events)
    df = _with_lines(rng, df, seed, idless_rate)
    retries = _retries(rng, df, retry_rate)
    lines = pl.concat([df.select("day", "secs", "line"), retries.select("day", "secs", "line")])
    written, total_lines, n_bad = _write_days(
        rng, out, first, ndays, lines.sort("secs"), bad_lines, gzip_every
    )
    return SampleReport(
        files=written,
        events=df.height,
        lines=total_lines,
        duplicate_lines=retries.height,
        bad_lines=n_bad,
        workspaces=workspaces,
    )


def _events(
    rng: np.random.Generator, first: date, ndays: int, workspaces: int, events: int
) -> pl.DataFrame:
    """Storage readings (one per workspace and day) and Zipf-weighted usage events."""
    ws_ids = np.array([f"ws_{i:04d}" for i in range(1, workspaces + 1)])
    weights = 1.0 / np.arange(1, workspaces + 1) ** 1.1
    weights /= weights.sum()

    n_storage = workspaces * ndays
    st_ws = np.repeat(np.arange(workspaces), ndays)
    st_day = np.tile(np.arange(ndays), workspaces)
    base_gb = rng.gamma(2.0, 50.0, workspaces)
    growth = rng.uniform(0.0, 3.0, workspaces)
    st_qty_milli = np.round((base_gb[st_ws] + growth[st_ws] * st_day) * 1000).astype(np.int64)
    st_secs = st_day * 86400 + rng.integers(0, 86400, n_storage)

    n_usage = max(events - n_storage, 0)
    u_ws = rng.choice(workspaces, n_usage, p=weights)
    u_metric = rng.choice(3, n_usage, p=[0.93, 0.05, 0.02])
    u_qty = np.where(
        u_metric == 0,
        rng.integers(1, 500, n_usage),
        np.where(u_metric == 1, rng.integers(1, 4, n_usage), 1),
    )
    u_secs = rng.integers(0, ndays * 86400, n_usage)

    metric_names = np.array(["api_calls", "contracts", "kyc_checks", "storage"])
    epoch0 = int(np.datetime64(first.isoformat(), "s").astype(np.int64))
    return pl.DataFrame(
        {
            "ws": np.concatenate([ws_ids[u_ws], ws_ids[st_ws]]),
            "metric": np.concatenate([metric_names[u_metric], np.full(n_storage, "storage")]),
            "qty": np.concatenate([u_qty.astype(str), _milli_to_text(st_qty_milli)]),
            "secs": np.concatenate([u_secs, st_secs]) + epoch0,
        }
    )


def _with_lines(
    rng: np.random.Generator, df: pl.DataFrame, seed: int, idless_rate: float
) -> pl.DataFrame:
    """Each event's id (none for a few), UTC offset, day and JSON line."""
    n = df.height
    df = df.with_columns(
        pl.Series("seq", np.arange(n)),
        pl.Series("offset_min", rng.choice([0, 0, 0, 0, 60, 120, -300, 330], n)),
        pl.Series("idless", rng.random(n) < idless_rate),
    )
    df = df.with_columns(_timestamp_expr(), (pl.from_epoch("secs").dt.date()).alias("day"))
    df = df.with_columns(
        pl.when(pl.col("idless"))
        .then(pl.lit(None, dtype=pl.String))
        .otherwise(pl.format("evt_{}_{}", pl.lit(seed), pl.col("seq")))
        .alias("id")
    )
    return df.with_columns(_line_expr().alias("line"))


def _retries(rng: np.random.Generator, df: pl.DataFrame, retry_rate: float) -> pl.DataFrame:
    """Retries: the same id sent again a second later (a tenth with another quantity)."""
    n_retry = int(df.height * retry_rate)
    with_id = df.filter(~pl.col("idless"))
    retry_idx = rng.choice(with_id.height, n_retry, replace=False)
    retries = with_id[np.sort(retry_idx)]
    conflict = rng.random(n_retry) < 0.1
    return retries.with_columns(
        pl.when(pl.Series(conflict) & (pl.col("metric") != "storage"))
        .then((pl.col("qty").cast(pl.Int64) + 1).cast(pl.String))
        .otherwise(pl.col("qty"))
        .alias("qty"),
        (pl.col("secs") + 1).alias("secs"),
    ).with_columns(_line_expr().alias("line"))


def _write_days(
    rng: np.random.Generator,
    out: Path,
    first: date,
    ndays: int,
    lines: pl.DataFrame,
    bad_lines: int,
    gzip_every: int,
) -> tuple[list[str], int, int]:
    """One file per day (every ``gzip_every``-th gzipped), bad lines mixed in; returns the
    files, the number of lines and of bad lines written."""
    written: list[str] = []
    bad_days = rng.choice(ndays, min(bad_lines, len(_BAD_LINES) * ndays), replace=True)
    total_lines = 0
    for d in range(ndays):
        day = date.fromordinal(first.toordinal() + d)
        body = lines.filter(pl.col("day") == day).get_column("line").to_list()
        for k, bad_day in enumerate(bad_days):
            if bad_day == d:
                template = _BAD_LINES[k % len(_BAD_LINES)]
                line = template.replace("{day}", str(day))
                body.insert(int(rng.integers(0, len(body) + 1)), line)
        total_lines += len(body)
        gz = gzip_every > 0 and d % gzip_every == gzip_every - 1
        name = f"usage-{day.isoformat()}.jsonl" + (".gz" if gz else "")
        _write_atomic(out / name, ("\n".join(body) + "\n").encode(), gz)
        written.append(str(out / name))
    return written, total_lines, int(len(bad_days))


def _milli_to_text(milli: np.ndarray) -> np.ndarray:
    whole = milli // 1000
    frac = milli % 1000
    return np.char.add(np.char.add(whole.astype(str), "."), np.char.zfill(frac.astype(str), 3))


def _timestamp_expr() -> pl.Expr:
    """ISO 8601 with 'Z' or a local offset for the same instant."""
    local = pl.from_epoch(pl.col("secs") + pl.col("offset_min") * 60)
    off = pl.col("offset_min")
    sign = pl.when(off < 0).then(pl.lit("-")).otherwise(pl.lit("+"))
    hh = (off.abs() // 60).cast(pl.String).str.zfill(2)
    mm = (off.abs() % 60).cast(pl.String).str.zfill(2)
    offset = pl.concat_str([sign, hh, pl.lit(":"), mm])
    suffix = pl.when(off == 0).then(pl.lit("Z")).otherwise(offset)
    return pl.concat_str([local.dt.strftime("%Y-%m-%dT%H:%M:%S"), suffix]).alias("ts")


def _line_expr() -> pl.Expr:
    id_part = (
        pl.when(pl.col("id").is_null())
        .then(pl.lit(""))
        .otherwise(pl.concat_str([pl.lit('{"id": "'), pl.col("id"), pl.lit('", ')]))
    )
    open_brace = pl.when(pl.col("id").is_null()).then(pl.lit("{")).otherwise(pl.lit(""))
    return pl.concat_str(
        [
            id_part,
            open_brace,
            pl.lit('"workspaceId": "'),
            pl.col("ws"),
            pl.lit('", "metric": "'),
            pl.col("metric"),
            pl.lit('", "quantity": '),
            pl.col("qty"),
            pl.lit(', "timestamp": "'),
            pl.col("ts"),
            pl.lit('"}'),
        ]
    )


def _write_atomic(path: Path, data: bytes, gz: bool) -> None:
    atomic_write_bytes(path, gzip.compress(data, compresslevel=1, mtime=0) if gz else data)
