-- usage_monthly: usage per workspace, metric and calendar month (UTC), totalled with each
-- metric's period semantics: the numbers a whole-month invoice uses.
-- Grain: workspace_id x metric x month (the month's first day).
-- Units: quantity in the metric unit. sum and count metrics: the sum of the month's days;
-- max: the largest day; latest: the value of the month's last day with usage;
-- unique_count: distinct property values over the month (from events); gauge (storage):
-- the mean over every day of the month of the value in force that day (the last reading,
-- carried forward across months; 0 before the first reading), i.e. GB-months, rounded
-- half-up to 9 decimals: the library's rule (gauge_quantities.sql, included below). A
-- gauge has a row for every month from its first reading through the last month present
-- in usage_daily (a month in progress holds the last value to its end). days_with_usage = the month's usage_daily rows (gauge: days with a reading);
-- events = the events behind them.
CREATE OR REPLACE VIEW usage_monthly AS
WITH daily AS (
    SELECT
        workspace_id,
        metric,
        day,
        CAST(date_trunc('month', day) AS DATE) AS month,
        quantity,
        events,
        aggregation,
        property
    FROM usage_daily
),

all_events AS (
    SELECT workspace_id, metric, day, properties FROM events
),

day_counts AS (
    SELECT workspace_id, metric, month, count(*) AS days_with_usage, CAST(sum(events) AS BIGINT) AS events
    FROM daily
    GROUP BY workspace_id, metric, month
),

additive AS (
    SELECT
        workspace_id,
        metric,
        month,
        any_value(aggregation) AS aggregation,
        CASE any_value(aggregation)
            WHEN 'max' THEN max(quantity)
            WHEN 'latest' THEN arg_max(quantity, day)
            ELSE sum(quantity)
        END AS quantity
    FROM daily
    WHERE aggregation IN ('sum', 'count', 'max', 'latest')
    GROUP BY workspace_id, metric, month
),

counted_properties AS (
    SELECT DISTINCT metric, property FROM daily WHERE aggregation = 'unique_count'
),

uniques AS (
    SELECT
        e.workspace_id,
        e.metric,
        CAST(date_trunc('month', e.day) AS DATE) AS month,
        'unique_count' AS aggregation,
        CAST(count(DISTINCT json_extract_string(e.properties, '$."' || p.property || '"')) AS DECIMAL(38, 9)) AS quantity
    FROM all_events AS e
    JOIN counted_properties AS p ON p.metric = e.metric
    GROUP BY e.workspace_id, e.metric, CAST(date_trunc('month', e.day) AS DATE)
),

gauge_days AS (
    SELECT workspace_id, metric, day, month, quantity FROM daily WHERE aggregation = 'gauge'
),

gauge_series AS (
    -- every month from the gauge's first reading through the last month of the rollup
    SELECT
        f.workspace_id,
        f.metric,
        CAST(unnest(generate_series(
            CAST(f.first_month AS TIMESTAMP),
            CAST((SELECT max(month) FROM daily) AS TIMESTAMP),
            INTERVAL 1 MONTH
        )) AS DATE) AS month
    FROM (
        SELECT workspace_id, metric, min(month) AS first_month
        FROM gauge_days
        GROUP BY workspace_id, metric
    ) AS f
),

gauge_steps AS (
    -- the input of gauge_quantities.sql: a start step on each month of the series, then
    -- the readings, each counting in its own month
    SELECT
        workspace_id,
        metric,
        month AS day,
        0 AS step_order,
        NULL::DECIMAL(38, 9) AS reading,
        month AS period_start,
        CAST(month + INTERVAL 1 MONTH AS DATE) - 1 AS period_end,
        CAST(CAST(month + INTERVAL 1 MONTH AS DATE) - month AS INTEGER) AS period_days
    FROM gauge_series
    UNION ALL
    SELECT
        workspace_id,
        metric,
        day,
        1 AS step_order,
        quantity AS reading,
        month AS period_start,
        CAST(month + INTERVAL 1 MONTH AS DATE) - 1 AS period_end,
        CAST(CAST(month + INTERVAL 1 MONTH AS DATE) - month AS INTEGER) AS period_days
    FROM gauge_days
),

gauge_quantities AS (
-- include: gauge_quantities
),

gauges AS (
    SELECT workspace_id, metric, period_start AS month, 'gauge' AS aggregation, quantity
    FROM gauge_quantities
),

totals AS (
    SELECT * FROM additive
    UNION ALL
    SELECT * FROM uniques
    UNION ALL
    SELECT * FROM gauges
),

final AS (
    SELECT
        t.workspace_id,
        t.metric,
        t.month,
        t.aggregation,
        t.quantity,
        coalesce(c.days_with_usage, 0) AS days_with_usage,
        coalesce(c.events, 0) AS events
    FROM totals AS t
    LEFT JOIN day_counts AS c
        ON c.workspace_id = t.workspace_id AND c.metric = t.metric AND c.month = t.month
)

SELECT * FROM final
