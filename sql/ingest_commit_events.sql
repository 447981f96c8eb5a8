-- ingest_commit_events: append this ingest's new events to `events`.
-- Grain: one row per accepted, non-duplicate staged line whose day is in [$day_from,
-- $day_to] (duplicates were taken out of `staged` once counted). No sort: DuckLake writes
-- the rows into their day partition as they come (logs arrive roughly in time order, so
-- a day's rows arrive together); per-file and per-ingest constants are added here.
-- Run once per group of days so that a very large ingest does not hold every day
-- partition open at once (a day is never split between groups).
-- Parameters: $ingest_id, $now (ingested_at), $source_files and $source_sha256s (indexed
-- by file_seq + 1), $day_from, $day_to. Inputs: temp `staged`.
WITH fresh AS (
    SELECT s.file_seq, s.line_no, s.id, s.workspace_id, s.metric, s.quantity, s.ts, s.day, s.properties
    FROM temp.staged AS s
    WHERE s.day BETWEEN $day_from AND $day_to
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
    FROM fresh
)

INSERT INTO events
SELECT * FROM final
