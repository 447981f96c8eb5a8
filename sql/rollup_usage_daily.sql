-- rollup_usage_daily: recompute the daily rollup of the UTC days [$first_day, $last_day]
-- for the catalogue metrics aggregated by sum, count, gauge and max, from `events`, and
-- append it to `usage_daily` (rollup_delete_days.sql removed those days first). The
-- metrics aggregated by latest and unique_count are rollup_usage_daily_second_look.sql's.
-- The caller runs it once per run of consecutive days to recompute: a range filter on the
-- partition column prunes the other days' files and costs nothing per row.
-- Grain: one row per (workspace_id, metric, day) with at least one event of such a metric
-- that day. Events of a metric no longer in the catalogue are left out.
-- Units: quantity in the metric's unit, DECIMAL(38,9), per the metric's aggregation:
--   sum          the sum of the day's quantities
--   count        the number of the day's events
--   gauge, max   the day's largest quantity
-- Parameters: $first_day, $last_day (DATE); the metric catalogue as parallel lists
-- $metric_names, $aggregations, $properties (VARCHAR[]).
-- One pass over the days' events computes sum, count and max for every group, and the
-- metric's aggregation picks one (a FILTER restricting max to gauge and max metrics is
-- evaluated per event and costs as much as the max itself: measured).
WITH catalogue AS (
    SELECT
        unnest(CAST($metric_names AS VARCHAR[])) AS metric,
        unnest(CAST($aggregations AS VARCHAR[])) AS aggregation,
        unnest(CAST($properties AS VARCHAR[])) AS property
),

per_day AS (
    SELECT
        e.workspace_id,
        e.metric,
        e.day,
        sum(e.quantity) AS q_sum,
        count(*) AS n_events,
        max(e.quantity) AS q_max
    FROM events AS e
    WHERE e.day BETWEEN CAST($first_day AS DATE) AND CAST($last_day AS DATE)
    GROUP BY e.workspace_id, e.metric, e.day
),

final AS (
    SELECT
        p.workspace_id,
        p.metric,
        p.day,
        CASE c.aggregation
            WHEN 'sum' THEN p.q_sum
            WHEN 'count' THEN CAST(p.n_events AS DECIMAL(38, 9))
            ELSE p.q_max
        END AS quantity,
        p.n_events AS events,
        c.aggregation,
        c.property
    FROM per_day AS p
    JOIN catalogue AS c ON c.metric = p.metric
    WHERE c.aggregation IN ('sum', 'count', 'gauge', 'max')
)

INSERT INTO usage_daily (workspace_id, metric, day, quantity, events, aggregation, property)
SELECT workspace_id, metric, day, quantity, events, aggregation, property
FROM final
ORDER BY day, workspace_id, metric
