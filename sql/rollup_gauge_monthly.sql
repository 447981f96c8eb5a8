-- rollup_gauge_monthly: the new content of the `gauge_monthly` year partitions touched by
-- a rollup: the months whose days were recomputed, from `usage_daily` (already refreshed
-- in the same transaction), and the untouched months of those years as they were.
-- Grain: one row per (workspace_id, metric, month) with at least one reading that month.
-- Units: quantity in the metric unit (GB for storage): the value of last_day.
-- Parameters: $months (DATE[], first days of the recomputed months), $month_days (DATE[],
-- every day of those months: prunes usage_daily to their partitions), $year_starts (DATE[],
-- January 1st of the touched years), $gauge_metrics (VARCHAR[]).
WITH changed_months AS (
    SELECT DISTINCT unnest(CAST($months AS DATE[])) AS month
),

touched_years AS (
    SELECT DISTINCT unnest(CAST($year_starts AS DATE[])) AS year_start
),

gauges AS (
    SELECT unnest(CAST($gauge_metrics AS VARCHAR[])) AS metric
),

kept AS (
    -- the touched years' months that were not recomputed, unchanged
    SELECT g.workspace_id, g.metric, g.month, g.last_day, g.quantity
    FROM gauge_monthly AS g
    WHERE CAST(date_trunc('year', g.month) AS DATE) IN (SELECT year_start FROM touched_years)
      AND g.month NOT IN (SELECT month FROM changed_months)
      AND g.metric IN (SELECT metric FROM gauges)
),

readings AS (
    SELECT u.workspace_id, u.metric, CAST(date_trunc('month', u.day) AS DATE) AS month, u.day, u.quantity
    FROM usage_daily AS u
    WHERE u.day IN (SELECT unnest(CAST($month_days AS DATE[])))
      AND u.metric IN (SELECT metric FROM gauges)
),

recomputed AS (
    SELECT
        workspace_id,
        metric,
        month,
        max(day) AS last_day,
        arg_max(quantity, day) AS quantity
    FROM readings
    GROUP BY workspace_id, metric, month
),

final AS (
    SELECT * FROM kept
    UNION ALL
    SELECT * FROM recomputed
)

SELECT workspace_id, metric, month, last_day, quantity
FROM final
ORDER BY month, workspace_id, metric
