"""Usage rollup and queries at scale: ``usage.refresh_rollup`` and ``usage.get_usage``.

    .venv/bin/python benchmarks/bench_usage.py [--events 10000000] [--big] [--workspaces 10000]
                                               [--repeat 5] [--home DIR] [--keep]

Data: a month (January 2024) of events written straight into the lake's ``events`` table
by a vectorised DuckDB generator (one transaction and one manifest row per day, like
nightly ingests): Zipf-skewed workspaces (p(k) ~ 1/(k+1)), api_calls / contracts /
kyc_checks counts, and one or two storage gauge readings per workspace and day. Going
through JSON would only time the ingest (see bench_ingest.py); the new day of (b) does go
through ``ingest()``.

Figures (medians of ``--repeat`` runs, same process, same DuckDB settings):

(a) full month aggregation: a bare ``SELECT workspace_id, metric, day, sum(quantity) ...
    GROUP BY workspace_id, metric, day`` over the same events as plain hive-partitioned
    Parquet (``COPY ... PARTITION_BY (day)``), kept in memory and written as Parquet by
    day; beside it the aggregation of ``sql/rollup_usage_daily.sql`` alone through
    DuckLake (kept in memory: target ratio <= 1.2), the same GROUP BY through DuckLake with
    one aggregate more at a time (sum; + count; + max: where the ratio goes; the query
    adds the catalogue join that picks and records each row's aggregation), and
    ``refresh_rollup`` recomputing all 31 days end to end (pending ingests found, day
    partitions replaced, gauge months, rollup_log, one commit).
(b) nightly refresh after one new day (Feb 1st, events/31 events, ingested from JSONL),
    then after late events for one old day (Jan 5th): should cost about one day's share
    of (a), not the month.
(c) ``get_usage`` for one workspace and a month, on a warm connection: the largest
    workspace, a tail one and an unknown one; all metrics and one metric. Target <= 50 ms
    at 50M events. The cold call (connection and extension loading included) is shown
    too.
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import sys
import tempfile
import time
from collections import defaultdict
from collections.abc import Callable
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import duckdb

from billing_batch.config.settings import Settings, load_settings
from billing_batch.storage.lake import Lake
from billing_batch.storage.sqlfiles import load_sql, sql_literal
from billing_batch.usage.ingest import ingest
from billing_batch.usage.queries import get_usage
from billing_batch.usage.rollup import catalogue_params, refresh_rollup

MONTH = date(2024, 1, 1)
DAYS = 31

_GENERATE_DAY = """
INSERT INTO events
WITH r AS (
    SELECT
        i,
        hash(i, 1) / 18446744073709551616.0 AS u1,
        hash(i, 2) / 18446744073709551616.0 AS u2,
        hash(i, 3) AS h3,
        CAST(hash(i, 4) % 86400000000 AS BIGINT) AS us
    FROM range($first, $first + $n) AS t(i)
),
counts AS (
    SELECT
        i,
        printf('ws_%05d', CAST(floor(exp(u1 * ln($workspaces + 1))) AS INTEGER) - 1) AS ws,
        CASE WHEN u2 < 0.75 THEN 'api_calls' WHEN u2 < 0.87 THEN 'contracts' ELSE 'kyc_checks' END
            AS metric,
        CAST(CASE WHEN u2 < 0.75 THEN 1 + h3 % 1000 WHEN u2 < 0.87 THEN 1 + h3 % 5 ELSE 1 END
            AS DECIMAL(38, 9)) AS q,
        CAST($day AS TIMESTAMPTZ) + to_microseconds(us) AS ts
    FROM r
),
storage AS (
    SELECT
        -(w * 2 + k + 1) AS i,
        printf('ws_%05d', w) AS ws,
        'storage' AS metric,
        CAST(round((w % 97) * 10 + $day_no * 0.5 + k * 0.25, 3) AS DECIMAL(38, 9)) AS q,
        CAST($day AS TIMESTAMPTZ) + to_microseconds(CAST((6 + 12 * k) * 3600000000 AS BIGINT))
            AS ts
    FROM range($workspaces) AS a(w), range(2) AS b(k)
    WHERE k = 0 OR hash(w, $day_no) % 2 = 0
),
final AS (
    SELECT * FROM counts
    UNION ALL
    SELECT * FROM storage
)
SELECT
    'evt_' || $day_no || '_' || i, ws, metric, q, ts, CAST(ts AS DATE), NULL, $source_file, $sha,
    abs(i), $ingest_id,
    now()
FROM final
ORDER BY ws
"""

_MANIFEST_ROW = """
INSERT INTO ingest_manifest
SELECT $ingest_id, $source_file, $sha, 0, count(*), 0, count(*), 0, 0, 0, [CAST($day AS DATE)],
       min(ts), max(ts), now(), now(), $snapshot
FROM events WHERE day = CAST($day AS DATE) AND ingest_id = $ingest_id
"""


def generate_month(settings: Settings, events: int, workspaces: int) -> None:
    """``events`` events over January (plus the storage readings) into the lake."""
    big = settings.model_copy(
        update={"lake": settings.lake.model_copy(update={"memory_limit": "4GB"})}
    )
    lake = Lake(big)
    con = lake.connect()
    per_day = events // DAYS
    try:
        for d in range(DAYS):
            day = MONTH + timedelta(days=d)
            params = {
                "ingest_id": f"ing_bench_{day:%Y%m%d}",
                "source_file": f"/bench/usage-{day}.jsonl",
                "sha": f"bench{day}",
                "day": day,
            }
            with lake.transaction(con, f"bench ingest {day}"):
                con.execute(
                    _GENERATE_DAY,
                    {
                        **{k: params[k] for k in ("ingest_id", "source_file", "sha", "day")},
                        "first": d * per_day,
                        "n": per_day,
                        "workspaces": workspaces,
                        "day_no": d,
                    },
                )
                con.execute(_MANIFEST_ROW, {**params, "snapshot": lake.current_snapshot(con) + 1})
            print(f"\r  generated {day}", end="", file=sys.stderr, flush=True)
        print(file=sys.stderr)
    finally:
        con.close()


def write_new_day(path: Path, day: date, events: int, workspaces: int) -> Path:
    """A JSONL file of ``events`` events on ``day`` (the night's new data)."""
    con = duckdb.connect()
    con.execute("SET TimeZone = 'UTC'")
    con.execute(
        f"""
        COPY (
            SELECT
                'evt_new_' || strftime(CAST($day AS DATE), '%Y%m%d') || '_' || i AS id,
                printf('ws_%05d', CAST(floor(exp(u1 * ln($w + 1))) AS INTEGER) - 1)
                    AS "workspaceId",
                CASE WHEN u2 < 0.75 THEN 'api_calls' WHEN u2 < 0.87 THEN 'contracts'
                     ELSE 'kyc_checks' END AS metric,
                CAST(1 + hash(i, 3) % 1000 AS BIGINT) AS quantity,
                strftime(CAST($day AS TIMESTAMP) + to_microseconds(CAST(hash(i, 4) % 86400000000
                    AS BIGINT)), '%Y-%m-%dT%H:%M:%S.%fZ') AS "timestamp"
            FROM (
                SELECT i, hash(i, 11) / 18446744073709551616.0 AS u1,
                       hash(i, 12) / 18446744073709551616.0 AS u2
                FROM range($n) AS t(i)
            )
        ) TO {sql_literal(str(path))} (FORMAT json)
        """,
        {"day": day, "w": workspaces, "n": events},
    )
    con.close()
    return path


def bare_parquet(settings: Settings, out: Path) -> None:
    """The lake's events as plain hive-partitioned Parquet (the baseline's input)."""
    con = Lake(settings).connect(read_only=True)
    try:
        con.execute(
            f"COPY (SELECT * FROM events) TO {sql_literal(str(out))} "
            "(FORMAT parquet, PARTITION_BY (day), COMPRESSION zstd)"
        )
    finally:
        con.close()


def ms(seconds: float, digits: int = 0) -> str:
    return f"{seconds * 1000:,.{digits}f} ms"


def days_text(days: list[date]) -> str:
    return "days " + ", ".join(d.isoformat() for d in days)


def timed(fn: Callable[[], Any], repeat: int) -> tuple[float, Any]:
    times = []
    result: Any = None
    for _ in range(repeat):
        t0 = time.perf_counter()
        result = fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times), result


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--events", type=int, default=10_000_000)
    ap.add_argument("--big", action="store_true", help="50M events")
    ap.add_argument("--workspaces", type=int, default=10_000)
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--home", help="billing home to use (default: a temporary folder)")
    ap.add_argument("--keep", action="store_true", help="keep the temporary folder")
    args = ap.parse_args(argv)
    events = 50_000_000 if args.big else args.events

    root = Path(args.home) if args.home else Path(tempfile.mkdtemp(prefix="bench-usage-"))
    home = root / "home"
    settings = load_settings(env={"BILLING_HOME": str(home)})
    lake = Lake(settings)
    rows: list[tuple[str, str, str]] = []
    try:
        print(f"generating {events:,} events, {args.workspaces:,} workspaces ...", file=sys.stderr)
        t0 = time.perf_counter()
        generate_month(settings, events, args.workspaces)
        print(f"  {time.perf_counter() - t0:.1f} s", file=sys.stderr)
        bare_dir = root / "bare"
        bare_parquet(settings, bare_dir)

        con = lake.connect()
        n_events = con.execute("SELECT count(*) FROM events").fetchall()[0][0]

        # (a) full month: the rollup vs a bare GROUP BY over plain Parquet -----------------
        config: dict[str, Any] = {
            "memory_limit": settings.lake.memory_limit,  # what the job connection gets
            "preserve_insertion_order": False,
        }
        if settings.lake.threads:
            config["threads"] = settings.lake.threads
        bare = duckdb.connect(config=config)
        glob = sql_literal(str(bare_dir / "*" / "*.parquet"))
        bare_select = (
            "SELECT workspace_id, metric, day, sum(quantity) AS quantity "
            f"FROM read_parquet({glob}, hive_partitioning = true) "
            "GROUP BY workspace_id, metric, day"
        )
        out_dir = root / "bare_rollup"

        def bare_in_memory() -> None:
            bare.execute(f"CREATE OR REPLACE TEMP TABLE bare_rollup AS {bare_select}")

        def bare_written() -> None:
            shutil.rmtree(out_dir, ignore_errors=True)
            bare.execute(
                f"COPY ({bare_select}) TO {sql_literal(str(out_dir))} "
                "(FORMAT parquet, PARTITION_BY (day), COMPRESSION zstd)"
            )

        # the aggregation of sql/rollup_usage_daily.sql alone, through DuckLake, in memory
        aggregation = load_sql("rollup_usage_daily").split("INSERT INTO usage_daily")[0]
        params: dict[str, Any] = {"first_day": MONTH, "last_day": MONTH + timedelta(days=DAYS - 1)}
        params.update(catalogue_params(settings.metrics))

        def our_query() -> None:
            con.execute(
                f"CREATE OR REPLACE TEMP TABLE our_rollup AS {aggregation} SELECT * FROM final",
                params,
            )

        # where the ratio goes: the same GROUP BY through DuckLake, one aggregate at a time
        where = (
            "FROM events WHERE day BETWEEN CAST($first_day AS DATE) AND CAST($last_day AS DATE) "
            "GROUP BY workspace_id, metric, day"
        )
        steps = {
            "+ sum": "sum(quantity)",
            "+ count": "sum(quantity), count(*)",
            "+ max": "sum(quantity), count(*), max(quantity)",
        }
        days = {"first_day": params["first_day"], "last_day": params["last_day"]}

        def partial(aggregates: str) -> Callable[[], None]:
            def run() -> None:
                con.execute(
                    "CREATE OR REPLACE TEMP TABLE partial_rollup AS "
                    f"SELECT workspace_id, metric, day, {aggregates} {where}",
                    days,
                )

            return run

        def our_refresh() -> Any:
            with lake.transaction(con, "bench reset"):  # the month's ingests pending again
                con.execute("DELETE FROM rollup_log")
            t0 = time.perf_counter()
            result = refresh_rollup(settings, lake=lake, con=con)
            return time.perf_counter() - t0, result

        # interleaved, so that a busy machine slows all four alike; medians
        samples: dict[str, list[float]] = defaultdict(list)
        report: Any = None
        for _ in range(args.repeat):
            samples["bare"].append(timed(bare_in_memory, 1)[0])
            samples["query"].append(timed(our_query, 1)[0])
            samples["written"].append(timed(bare_written, 1)[0])
            for label, aggregates in steps.items():
                samples[label].append(timed(partial(aggregates), 1)[0])
            seconds, report = our_refresh()
            samples["refresh"].append(seconds)
        t_bare, t_query, t_bare_written, t_full = (
            statistics.median(samples[k]) for k in ("bare", "query", "written", "refresh")
        )
        bare_groups = bare.execute("SELECT count(*) FROM bare_rollup").fetchall()[0][0]
        assert report.rows_written == bare_groups, (report.rows_written, bare_groups)
        rows += [
            ("(a) bare GROUP BY, hive Parquet -> memory", ms(t_bare), f"{bare_groups:,} groups"),
            ("(a) bare GROUP BY, hive Parquet -> Parquet by day", ms(t_bare_written), ""),
            (
                "(a) rollup aggregation query -> memory",
                ms(t_query),
                f"ratio {t_query / t_bare:.2f} to the bare GROUP BY (target <= 1.2)",
            ),
            *(
                (
                    f"(a)   DuckLake GROUP BY {label}",
                    ms(statistics.median(samples[label])),
                    f"ratio {statistics.median(samples[label]) / t_bare:.2f}",
                )
                for label in steps
            ),
            (
                "(a) refresh_rollup, 31 days, committed",
                ms(t_full),
                f"ratio {t_full / t_bare_written:.2f} to the bare written, "
                f"{t_full / t_bare:.2f} to the bare in memory",
            ),
        ]

        # (b) the nightly refresh after one new day, then late events for an old day ------
        new_day = date(2024, 2, 1)
        per_day = events // DAYS
        f = write_new_day(root / f"usage-{new_day}.jsonl", new_day, per_day, args.workspaces)
        t0 = time.perf_counter()
        ingest(settings, [f], lake=lake)
        t_ingest = time.perf_counter() - t0
        t0 = time.perf_counter()
        rep_new = refresh_rollup(settings, lake=lake, con=con)
        t_new = time.perf_counter() - t0
        late = write_new_day(
            root / "late-2024-01-05.jsonl", date(2024, 1, 5), 10_000, args.workspaces
        )
        ingest(settings, [late], lake=lake)
        t0 = time.perf_counter()
        rep_late = refresh_rollup(settings, lake=lake, con=con)
        t_late = time.perf_counter() - t0
        t0 = time.perf_counter()
        rep_none = refresh_rollup(settings, lake=lake, con=con)
        t_none = time.perf_counter() - t0
        share = t_full / DAYS
        rows += [
            ("(b) ingest of the new day (JSONL)", ms(t_ingest), f"{per_day:,} events"),
            (
                "(b) refresh_rollup, the new day",
                ms(t_new),
                f"{days_text(rep_new.days)}; a day's share of (a) is {ms(share)}",
            ),
            (
                "(b) refresh_rollup, late events",
                ms(t_late),
                f"{days_text(rep_late.days)} (10,000 late events)",
            ),
            ("(b) refresh_rollup, nothing new", ms(t_none), f"snapshot {rep_none.snapshot_id}"),
        ]

        # (c) one workspace's month ------------------------------------------------------
        tail = f"ws_{args.workspaces - 1:05d}"
        jan_end = date(2024, 1, 31)
        for ws, label in (("ws_00000", "largest"), (tail, "tail"), ("ws_unknown", "unknown")):
            t_all, res = timed(lambda ws=ws: get_usage(settings, ws, MONTH, jan_end, con=con), 20)
            t_one, _ = timed(
                lambda ws=ws: get_usage(settings, ws, MONTH, jan_end, "api_calls", con=con), 20
            )
            rows += [
                (
                    f"(c) get_usage {label} {ws}, all metrics",
                    ms(t_all, 1),
                    f"api_calls {res[0]['total']}, storage {res[3]['total']} GB-months",
                ),
                (f"(c) get_usage {label} {ws}, api_calls", ms(t_one, 1), "target <= 50 ms"),
            ]
        t0 = time.perf_counter()
        get_usage(settings, "ws_00000", MONTH, jan_end)
        rows.append(
            (
                "(c) get_usage, own connection",
                ms(time.perf_counter() - t0),
                "connection and extension loading included",
            )
        )
        con.close()
    finally:
        if not args.keep and not args.home:
            shutil.rmtree(root, ignore_errors=True)

    print(
        f"\nbench_usage: {n_events:,} events, {args.workspaces:,} workspaces, "
        f"{datetime.now(UTC):%Y-%m-%d %H:%M} UTC, duckdb {duckdb.__version__}"
    )
    width = max(len(r[0]) for r in rows)
    for name, value, note in rows:
        print(f"  {name:<{width}}  {value:>10}  {note}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
