-- rollup_usage_daily_second_look: the daily rollup of the UTC days [$first_day,
-- $last_day] for the catalogue metrics aggregated by latest and unique_count (the others
-- are rollup_usage_daily.sql's), appended to `usage_daily`. Only those metrics' events
-- are read; the caller skips this file when the catalogue has no such metric.
-- Grain: one row per (workspace_id, metric, day) with at least one event of such a metric
-- that day.
-- Units: quantity in the metric's unit, DECIMAL(38,9), per the metric's aggregation:
--   latest       the quantity of the day's last event by ts; events with the same ts:
--                the largest quantity (deterministic whatever the ingest order)
--   unique_count the number of distinct values of properties.<property> (an event
--                without that property counts for nothing)
-- Parameters: $first_day, $last_day (DATE); the metric catalogue as parallel lists
-- $metric_names, $aggregations, $properties (VARCHAR[]; property NULL unless unique_count).
WITH catalogue AS (
    SELECT
        unnest(CAST($metric_names AS VARCHAR[])) AS metric,
        unnest(CAST($aggregations AS VARCHAR[])) AS aggregation,
        unnest(CAST($properties AS VARCHAR[])) AS property
),

looked_at AS (
    SELECT
        e.workspace_id,
        e.metric,
        e.day,
        e.ts,
        e.quantity,
        c.aggregation,
        c.property,
        -- the property's value, for unique_count (NULL when absent)
        CASE
            WHEN c.aggregation = 'unique_count'
                THEN json_extract_string(e.properties, '$."' || c.property || '"')
        END AS property_value
    FROM events AS e
    JOIN catalogue AS c ON c.metric = e.metric AND c.aggregation IN ('latest', 'unique_count')
    WHERE e.day BETWEEN CAST($first_day AS DATE) AND CAST($last_day AS DATE)
),

final AS (
    SELECT
        workspace_id,
        metric,
        day,
        CASE any_value(aggregation)
            WHEN 'latest' THEN arg_max(quantity, struct_pack(ts := ts, quantity := quantity))
            ELSE CAST(count(DISTINCT property_value) AS DECIMAL(38, 9))
        END AS quantity,
        count(*) AS events,
        any_value(aggregation) AS aggregation,
        any_value(property) AS property
    FROM looked_at
    GROUP BY workspace_id, metric, day
)

INSERT INTO usage_daily (workspace_id, metric, day, quantity, events, aggregation, property)
SELECT workspace_id, metric, day, quantity, events, aggregation, property
FROM final
ORDER BY day, workspace_id, metric
