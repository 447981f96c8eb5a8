-- rollup_usage_daily: recompute the daily rollup of the UTC days [$first_day, $last_day]
-- from `events` and append it to `usage_daily` (rollup_delete_days.sql removed those days
-- first). The caller runs it once per run of consecutive days to recompute: a range
-- filter on the partition column prunes the other days' files and costs nothing per row.
-- Grain: one row per (workspace_id, metric, day) with at least one event of a catalogue
-- metric that day. Events of a metric no longer in the catalogue are left out.
-- Units: quantity in the metric's unit, DECIMAL(38,9), per the metric's aggregation:
--   sum          the sum of the day's quantities
--   count        the number of the day's events
--   gauge, max   the day's largest quantity
--   latest       the quantity of the day's last event by ts; events with the same ts:
--                the largest quantity (deterministic whatever the ingest order)
--   unique_count the number of distinct values of properties.<property> (an event
--                without that property counts for nothing)
-- Parameters: $first_day, $last_day (DATE); the metric catalogue as parallel lists
-- $metric_names, $aggregations, $properties (VARCHAR[]; property NULL unless unique_count),
-- and $max_metrics (the names of the gauge and max metrics).
-- One pass over the days' partitions computes sum, count and max; `latest` and
-- `unique_count` metrics get a second look at their own events only.
WITH catalogue AS (
    SELECT
        unnest(CAST($metric_names AS VARCHAR[])) AS metric,
        unnest(CAST($aggregations AS VARCHAR[])) AS aggregation,
        unnest(CAST($properties AS VARCHAR[])) AS property
),

per_day AS (
    -- one pass over the days' events for every metric: sum, count, and the largest
    -- quantity where the aggregation needs it
    SELECT
        e.workspace_id,
        e.metric,
        e.day,
        sum(e.quantity) AS q_sum,
        count(*) AS n_events,
        -- a constant list, not a subquery: evaluated per row without a join
        max(e.quantity) FILTER (WHERE list_contains(CAST($max_metrics AS VARCHAR[]), e.metric)) AS q_max
    FROM events AS e
    WHERE e.day BETWEEN CAST($first_day AS DATE) AND CAST($last_day AS DATE)
    GROUP BY e.workspace_id, e.metric, e.day
),

latest AS (
    -- only the events of `latest` metrics (none: nothing is read)
    SELECT
        e.workspace_id,
        e.metric,
        e.day,
        arg_max(e.quantity, struct_pack(ts := e.ts, quantity := e.quantity)) AS q_latest
    FROM events AS e
    WHERE e.day BETWEEN CAST($first_day AS DATE) AND CAST($last_day AS DATE)
      AND e.metric IN (SELECT metric FROM catalogue WHERE aggregation = 'latest')
    GROUP BY e.workspace_id, e.metric, e.day
),

uniques AS (
    -- only the events of `unique_count` metrics (none: nothing is read)
    SELECT
        e.workspace_id,
        e.metric,
        e.day,
        count(DISTINCT json_extract_string(e.properties, '$."' || c.property || '"')) AS q_unique
    FROM events AS e
    JOIN catalogue AS c ON c.metric = e.metric AND c.aggregation = 'unique_count'
    WHERE e.day BETWEEN CAST($first_day AS DATE) AND CAST($last_day AS DATE)
    GROUP BY e.workspace_id, e.metric, e.day
),

direct AS (
    -- sum, count, gauge, max: straight from the one pass
    SELECT
        p.workspace_id,
        p.metric,
        p.day,
        CASE c.aggregation
            WHEN 'sum' THEN p.q_sum
            WHEN 'count' THEN CAST(p.n_events AS DECIMAL(38, 9))
            ELSE p.q_max
        END AS quantity,
        p.n_events,
        c.aggregation,
        c.property
    FROM per_day AS p
    JOIN catalogue AS c ON c.metric = p.metric
    WHERE c.aggregation IN ('sum', 'count', 'gauge', 'max')
),

second_look AS (
    -- latest, unique_count: from their own pass
    SELECT
        p.workspace_id,
        p.metric,
        p.day,
        coalesce(l.q_latest, CAST(u.q_unique AS DECIMAL(38, 9))) AS quantity,
        p.n_events,
        c.aggregation,
        c.property
    FROM per_day AS p
    JOIN catalogue AS c ON c.metric = p.metric
    LEFT JOIN latest AS l ON l.workspace_id = p.workspace_id AND l.metric = p.metric AND l.day = p.day
    LEFT JOIN uniques AS u ON u.workspace_id = p.workspace_id AND u.metric = p.metric AND u.day = p.day
    WHERE c.aggregation IN ('latest', 'unique_count')
),

final AS (
    SELECT workspace_id, metric, day, quantity, n_events AS events, aggregation, property
    FROM direct
    UNION ALL
    SELECT workspace_id, metric, day, quantity, n_events AS events, aggregation, property
    FROM second_look
)

INSERT INTO usage_daily (workspace_id, metric, day, quantity, events, aggregation, property)
SELECT workspace_id, metric, day, quantity, events, aggregation, property
FROM final
ORDER BY day, workspace_id, metric
