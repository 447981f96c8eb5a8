-- usage_period_unique: distinct values of a property over the UTC days [$start, $end],
-- for unique_count metrics (a period's distinct count is not a sum of its days).
-- Grain: one row per (workspace_id, metric) with events of that metric in the period.
-- Units: a count (DECIMAL(38,9), whole); an event without the property counts for nothing.
-- Parameters: $start, $end (DATE, inclusive); $workspace_id (VARCHAR, NULL = every
-- workspace); $metric_names, $properties (VARCHAR[], parallel: the counted property of
-- each unique_count metric).
WITH counted AS (
    SELECT
        unnest(CAST($metric_names AS VARCHAR[])) AS metric,
        unnest(CAST($properties AS VARCHAR[])) AS property
),

period_events AS (
    SELECT
        e.workspace_id,
        e.metric,
        json_extract_string(e.properties, '$."' || c.property || '"') AS value
    FROM events AS e
    JOIN counted AS c ON c.metric = e.metric
    WHERE e.day BETWEEN CAST($start AS DATE) AND CAST($end AS DATE)
      AND ($workspace_id IS NULL OR e.workspace_id = $workspace_id)
),

final AS (
    SELECT workspace_id, metric, CAST(count(DISTINCT value) AS DECIMAL(38, 9)) AS quantity
    FROM period_events
    GROUP BY workspace_id, metric
)

SELECT workspace_id, metric, quantity
FROM final
ORDER BY workspace_id, metric
