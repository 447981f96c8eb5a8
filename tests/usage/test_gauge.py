"""The one gauge query (``sql/gauge_quantities.sql``): the library's period quantities
and the ``usage_monthly`` view use it, so they agree month by month."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal
from pathlib import Path

from billing_batch.config.settings import Settings
from billing_batch.storage.lake import Lake
from billing_batch.usage.queries import period_quantities
from billing_batch.usage.rollup import refresh_rollup
from tests.usage.support import GAUGE_EVENTS, D, ev, load, q, with_extra_metrics


def test_usage_monthly_view_matches_the_library(settings: Settings, tmp_path: Path) -> None:
    s = with_extra_metrics(settings)
    load(
        s,
        tmp_path,
        [
            *GAUGE_EVENTS,
            ev("ws_g", "api_calls", 10, "2024-01-05T00:00:00Z"),
            ev("ws_g", "api_calls", 15, "2024-02-05T00:00:00Z"),
            ev("ws_g", "active_users", 1, "2024-01-05T00:00:00Z", user="a"),
            ev("ws_g", "active_users", 1, "2024-01-06T00:00:00Z", user="a"),
            ev("ws_g", "plan_level", 2, "2024-01-06T00:00:00Z"),
        ],
    )
    refresh_rollup(s)
    view = {
        (r[0], r[1], r[2]): r[3]
        for r in q(s, "SELECT workspace_id, metric, month, quantity FROM usage_monthly")
    }
    con = Lake(s).connect()
    try:
        months = sorted({m for _, _, m in view})
        assert months[0] == D("2023-11-01") and months[-1] == D("2024-04-01")
        for m in months:
            end = (m + timedelta(days=32)).replace(day=1) - timedelta(days=1)
            lib = period_quantities(con, m, end)
            assert {k: v for k, v in view.items() if k[2] == m} == {
                (ws, metric, m): value for (ws, metric), value in lib.items()
            }, m
    finally:
        con.close()
    assert view[("ws_g", "active_users", D("2024-01-01"))] == 1
    assert view[("ws_old", "storage", D("2024-04-01"))] == Decimal("7.5")
