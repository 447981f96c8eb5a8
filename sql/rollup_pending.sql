-- rollup_pending: the ingests the daily rollup has not absorbed yet, with their days.
-- Grain: one row per pending ingest_id. Units: days = the sorted, distinct UTC days that
-- received accepted events in that ingest (empty when every line was a duplicate or
-- rejected). Inputs: lake tables `ingest_manifest`, `rollup_log`.
WITH manifest AS (
    SELECT ingest_id, days
    FROM ingest_manifest
),

absorbed AS (
    SELECT ingest_id
    FROM rollup_log
),

pending AS (
    SELECT m.ingest_id, m.days
    FROM manifest AS m
    ANTI JOIN absorbed AS a ON a.ingest_id = m.ingest_id
),

final AS (
    SELECT
        ingest_id,
        list_sort(list_distinct(flatten(list(days)))) AS days
    FROM pending
    GROUP BY ingest_id
)

SELECT * FROM final
ORDER BY ingest_id
