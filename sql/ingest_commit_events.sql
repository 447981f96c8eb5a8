-- ingest_commit_events: append the new events of one file of this ingest to `events`.
-- Grain: one row per accepted, non-duplicate staged line of file $file_seq whose day is
-- in [$day_from, $day_to] (duplicates were taken out of `staged` once counted). No sort:
-- DuckLake writes the rows into their day partition as they come (logs arrive roughly
-- in time order, so a day's rows arrive together). The file's name and hash, the ingest
-- and its time are constants of the statement.
-- Run once per file and group of days so that a very large ingest does not hold every
-- day partition open at once (a file's day is never split between groups).
-- Parameters: $ingest_id, $now (ingested_at), $file_seq, $source_file, $source_sha256,
-- $day_from, $day_to. Inputs: temp `staged`.
WITH fresh AS (
    SELECT s.line_no, s.id, s.workspace_id, s.metric, s.quantity, s.ts, s.day, s.properties
    FROM temp.staged AS s
    WHERE s.file_seq = $file_seq AND s.day BETWEEN $day_from AND $day_to
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
        $source_file AS source_file,
        $source_sha256 AS source_sha256,
        line_no,
        $ingest_id AS ingest_id,
        $now AS ingested_at
    FROM fresh
)

INSERT INTO events
SELECT * FROM final
