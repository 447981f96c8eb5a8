-- usage_recorded_by_ingest: what each ingest recorded, per workspace and metric, for the
-- billing.usage.recorded webhook events. Grain: ingest_id x workspace_id x metric.
-- Units: events (count); total = sum of the events' quantities and max = the largest
-- one, both in the metric unit. Parameters: $ingest_ids, $days (the days those ingests
-- touched, for partition pruning).
WITH recorded AS (
    SELECT ingest_id, workspace_id, metric, quantity, day
    FROM events
    WHERE day IN (SELECT unnest($days::DATE[]))
      AND ingest_id IN (SELECT unnest($ingest_ids::VARCHAR[]))
),

final AS (
    SELECT
        ingest_id,
        workspace_id,
        metric,
        count(*) AS events,
        sum(quantity) AS total,
        max(quantity) AS peak,
        min(day) AS first_day,
        max(day) AS last_day
    FROM recorded
    GROUP BY ingest_id, workspace_id, metric
)

SELECT * FROM final ORDER BY ingest_id, workspace_id, metric
