-- ingest_commit_events: append this ingest's new events to `events`.
-- Grain: one row per accepted, non-duplicate staged line. Sorted by (day, workspace_id)
-- so each day's files keep a workspace's rows together (min/max pruning).
-- Parameters: $ingest_id, $now (ingested_at). Inputs: temp `staged`, `ingest_files`, `ingest_dups`.
WITH fresh AS (
    SELECT s.*
    FROM staged AS s
    ANTI JOIN temp.ingest_dups AS d ON d.file_seq = s.file_seq AND d.line_no = s.line_no
),

final AS (
    SELECT
        s.id,
        s.workspace_id,
        s.metric,
        s.quantity,
        s.ts,
        CAST(s.ts AS DATE) AS day,
        s.properties,
        f.source_file,
        f.source_sha256,
        s.line_no,
        $ingest_id AS ingest_id,
        $now AS ingested_at
    FROM fresh AS s
    JOIN temp.ingest_files AS f ON f.file_seq = s.file_seq
)

INSERT INTO events
SELECT * FROM final
ORDER BY day, workspace_id
