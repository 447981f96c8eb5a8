-- gauge_quantities: the one home of the gauge rule. A gauge's quantity over a billing
-- period is the mean, over every day of the period, of the value in force that day: the
-- last reading on or before it (carried forward, across months too; 0 before any reading
-- ever), i.e. (sum of the values in force) / (days of the period), rounded half-up to 9
-- decimal places in exact integer arithmetic (no float).
-- Included (`-- include: gauge_quantities`, see storage/lake.load_sql) as the body of a
-- CTE by usage_period.sql (one period, any days) and by views/usage_monthly.sql (every
-- calendar month); each defines the input relation `gauge_steps` before it:
--   workspace_id, metric, day  every reading (step_order 1, reading = the day's value)
--                              and a start step (step_order 0, reading NULL) on the first
--                              day of each period asked for; a reading the same day
--                              comes after its start step and replaces the carried value
--   period_start, period_end,  the period the step's day counts in (DATE, inclusive) and
--   period_days                the divisor (days of the whole billing period, which may
--                              be wider than [period_start, period_end]); a step whose
--                              day is outside its period only carries its value forward
-- Grain: one row per (workspace_id, metric, period_start) with a step in the period.
-- Units: quantity in unit-months (GB-months for storage).
WITH gauge_values AS (
    -- each step's value in force (the last reading so far) and the next step's day
    SELECT
        workspace_id,
        metric,
        day,
        period_start,
        period_end,
        period_days,
        last_value(reading IGNORE NULLS) OVER (
            PARTITION BY workspace_id, metric ORDER BY day, step_order
            ROWS BETWEEN UNBOUNDED PRECEDING AND CURRENT ROW
        ) AS value,
        lead(day) OVER (PARTITION BY workspace_id, metric ORDER BY day, step_order) AS next_day
    FROM gauge_steps
),

gauge_unit_days AS (
    -- each value holds until the next step, the last one through its period's end
    SELECT
        workspace_id,
        metric,
        period_start,
        period_days,
        coalesce(sum(value * (coalesce(next_day, period_end + 1) - day)), 0) AS unit_days
    FROM gauge_values
    WHERE day BETWEEN period_start AND period_end
    GROUP BY workspace_id, metric, period_start, period_days
),

final AS (
    -- unit_days / period_days, rounded half-up at 1e-9 in HUGEINT arithmetic
    SELECT
        workspace_id,
        metric,
        period_start,
        CAST(
            (CAST(unit_days * 1000000000 AS HUGEINT) * 2 + CAST(period_days AS HUGEINT))
                // (2 * CAST(period_days AS HUGEINT))
            AS DECIMAL(38, 0)
        ) * CAST(0.000000001 AS DECIMAL(10, 9)) AS quantity
    FROM gauge_unit_days
)

SELECT workspace_id, metric, period_start, quantity
FROM final
