-- usage_period: the billable quantity of each metric over the UTC days [$start, $end].
-- Grain: one row per (workspace_id, metric) with a rollup row in the period, or, for a
-- gauge, with a reading before it (its value is carried forward into the period); `day`
-- is NULL on these rows. With $with_days, also the breakdown: one row per (workspace_id,
-- metric, day) with usage (gauge: with a reading), so that get_usage reads the rollup once.
-- Units: the metric's unit; a gauge's quantity is in unit-months (GB-months for storage).
-- Semantics follow each usage_daily row's recorded aggregation:
--   sum, count    the sum of the period's days
--   max           the largest of the period's days
--   latest        the value of the period's last day with usage
--   gauge         (sum over every day d of [$start, $end] of the value in force on d) /
--                 $period_days, where the value in force is the last reading on or before d
--                 (from before the period too; 0 before any reading ever), rounded half-up
--                 to 9 decimal places (exact integer arithmetic, no float): the rule of
--                 gauge_quantities.sql, included below
--   unique_count  quantity NULL here: distinct values over the whole period need the
--                 events (usage_period_unique.sql); `property` names the counted property
-- Parameters: $start, $end (DATE, inclusive); $period_days (INTEGER >= 1, the gauge divisor:
-- the days of the whole billing period, which may be wider than [$start, $end]);
-- $workspace_id (VARCHAR, NULL = every workspace); $metric_names (VARCHAR[], NULL = every
-- metric); $with_days (BOOLEAN).
WITH period_rows AS (
    -- the rollup from the first day of $start's month (a gauge's carry-in) to $end
    SELECT u.workspace_id, u.metric, u.day, u.quantity, u.aggregation, u.property
    FROM usage_daily AS u
    WHERE u.day BETWEEN CAST(date_trunc('month', CAST($start AS DATE)) AS DATE) AND CAST($end AS DATE)
      AND ($workspace_id IS NULL OR u.workspace_id = $workspace_id)
      AND (CAST($metric_names AS VARCHAR[]) IS NULL OR list_contains(CAST($metric_names AS VARCHAR[]), u.metric))
),

month_end_readings AS (
    -- each gauge's last reading of every month before $start's month
    SELECT g.workspace_id, g.metric, g.last_day AS day, g.quantity
    FROM gauge_monthly AS g
    WHERE g.month < CAST(date_trunc('month', CAST($start AS DATE)) AS DATE)
      AND ($workspace_id IS NULL OR g.workspace_id = $workspace_id)
      AND (CAST($metric_names AS VARCHAR[]) IS NULL OR list_contains(CAST($metric_names AS VARCHAR[]), g.metric))
),

in_period AS (
    SELECT * FROM period_rows WHERE day >= CAST($start AS DATE)
),

additive_totals AS (
    SELECT
        workspace_id,
        metric,
        any_value(aggregation) AS aggregation,
        CASE any_value(aggregation)
            WHEN 'max' THEN max(quantity)
            WHEN 'latest' THEN arg_max(quantity, day)
            ELSE sum(quantity)
        END AS quantity,
        NULL::VARCHAR AS property
    FROM in_period
    WHERE aggregation IN ('sum', 'count', 'max', 'latest')
    GROUP BY workspace_id, metric
),

unique_totals AS (
    SELECT workspace_id, metric, 'unique_count' AS aggregation, NULL::DECIMAL(38, 9) AS quantity,
        any_value(property) AS property
    FROM in_period
    WHERE aggregation = 'unique_count'
    GROUP BY workspace_id, metric
),

gauge_readings AS (
    -- the gauge readings that count: the period's own and those before it in $start's
    -- month, and the last reading of each earlier month (which carry a value in)
    SELECT workspace_id, metric, day, quantity FROM period_rows WHERE aggregation = 'gauge'
    UNION ALL
    SELECT workspace_id, metric, day, quantity FROM month_end_readings
),

gauge_steps AS (
    -- the input of gauge_quantities.sql: a start step on $start, then the readings
    SELECT DISTINCT
        workspace_id,
        metric,
        CAST($start AS DATE) AS day,
        0 AS step_order,
        NULL::DECIMAL(38, 9) AS reading,
        CAST($start AS DATE) AS period_start,
        CAST($end AS DATE) AS period_end,
        CAST($period_days AS INTEGER) AS period_days
    FROM gauge_readings
    UNION ALL
    SELECT
        workspace_id,
        metric,
        day,
        1 AS step_order,
        quantity AS reading,
        CAST($start AS DATE) AS period_start,
        CAST($end AS DATE) AS period_end,
        CAST($period_days AS INTEGER) AS period_days
    FROM gauge_readings
),

gauge_quantities AS (
-- include: gauge_quantities
),

gauge_totals AS (
    SELECT workspace_id, metric, 'gauge' AS aggregation, quantity, NULL::VARCHAR AS property
    FROM gauge_quantities
),

day_rows AS (
    SELECT workspace_id, metric, day, aggregation, quantity, NULL::VARCHAR AS property
    FROM in_period
    WHERE CAST($with_days AS BOOLEAN)
),

final AS (
    SELECT workspace_id, metric, NULL::DATE AS day, aggregation, quantity, property
    FROM additive_totals
    UNION ALL
    SELECT workspace_id, metric, NULL::DATE AS day, aggregation, quantity, property
    FROM gauge_totals
    UNION ALL
    SELECT workspace_id, metric, NULL::DATE AS day, aggregation, quantity, property
    FROM unique_totals
    UNION ALL
    SELECT workspace_id, metric, day, aggregation, quantity, property
    FROM day_rows
)

SELECT workspace_id, metric, day, aggregation, quantity, property
FROM final
ORDER BY workspace_id, metric, day NULLS FIRST
