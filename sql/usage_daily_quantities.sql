-- usage_daily_quantities: one workspace's daily quantities over the UTC days
-- [$start, $end] (the breakdown of get_usage and of an invoice's explanation).
-- Grain: one row per (metric, day) with usage (for a gauge: with a reading); days
-- without usage are absent. Units: the metric's unit, per usage_daily's aggregation.
-- Parameters: $workspace_id (VARCHAR), $start, $end (DATE, inclusive), $metric_names
-- (VARCHAR[], NULL = every metric).
WITH workspace_days AS (
    SELECT u.metric, u.day, u.quantity
    FROM usage_daily AS u
    WHERE u.workspace_id = $workspace_id
      AND u.day BETWEEN CAST($start AS DATE) AND CAST($end AS DATE)
      AND (CAST($metric_names AS VARCHAR[]) IS NULL OR list_contains(CAST($metric_names AS VARCHAR[]), u.metric))
),

final AS (
    SELECT metric, day, quantity FROM workspace_days
)

SELECT metric, day, quantity
FROM final
ORDER BY metric, day
