-- usage_recorded_ingests: the committed ingests that accepted events, with the UTC days
-- they touched, for the billing.usage.recorded webhook events (the outbox keeps which
-- ones were reported). Grain: one row per ingest_id; days is a DATE[] (may repeat a day).
WITH manifest AS (
    SELECT ingest_id, accepted, days
    FROM ingest_manifest
),

final AS (
    SELECT ingest_id, flatten(list(days)) AS days
    FROM manifest
    GROUP BY ingest_id
    HAVING sum(accepted) > 0
)

SELECT * FROM final ORDER BY ingest_id
