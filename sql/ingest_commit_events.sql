-- ingest_commit_events: append this ingest's new events to `events`.
-- Grain: one row per accepted, non-duplicate staged line. Sorted by (day, workspace_id)
-- so each day's files keep a workspace's rows together (min/max pruning). Only the
-- staged columns go through the sort; per-file and per-ingest constants are added after.
-- Run once per group of days ($day_from..$day_to) so that each sort fits in memory (a
-- day is never split between groups: one data file per day and ingest, as one INSERT).
-- Parameters: $ingest_id, $now (ingested_at), $source_files and $source_sha256s (indexed
-- by file_seq + 1), $day_from, $day_to. Inputs: temp `staged`, `ingest_dups`.
WITH fresh AS (
    SELECT s.file_seq, s.line_no, s.id, s.workspace_id, s.metric, s.quantity, s.ts, s.day, s.properties
    FROM staged AS s
    ANTI JOIN temp.ingest_dups AS d ON d.file_seq = s.file_seq AND d.line_no = s.line_no
    WHERE s.day BETWEEN $day_from AND $day_to
),

sorted AS (
    SELECT * FROM fresh ORDER BY day, workspace_id
),

final AS (
    SELECT
        id,
        workspace_id,
        metric,
        quantity,
        ts,
        day,
        properties,
        list_extract($source_files, file_seq + 1) AS source_file,
        list_extract($source_sha256s, file_seq + 1) AS source_sha256,
        line_no,
        $ingest_id AS ingest_id,
        $now AS ingested_at
    FROM sorted
)

INSERT INTO events
SELECT * FROM final
