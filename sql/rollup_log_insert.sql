-- rollup_log_insert: record the ingests a rollup absorbed, in the rollup's transaction.
-- Grain: one row per ingest_id. Parameters: $ingest_ids (VARCHAR[]), $ingest_days
-- (DATE[][] in the same order), $now, $snapshot_id (the snapshot this commit creates).
WITH absorbed AS (
    SELECT
        unnest(CAST($ingest_ids AS VARCHAR[])) AS ingest_id,
        unnest(CAST($ingest_days AS DATE[][])) AS days
),

final AS (
    SELECT
        ingest_id,
        days,
        CAST($now AS TIMESTAMPTZ) AS rolled_up_at,
        CAST($snapshot_id AS BIGINT) AS snapshot_id
    FROM absorbed
)

INSERT INTO rollup_log (ingest_id, days, rolled_up_at, snapshot_id)
SELECT ingest_id, days, rolled_up_at, snapshot_id FROM final
