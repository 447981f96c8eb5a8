-- ingest_commit_duplicates: append this ingest's duplicate lines to `duplicates`.
-- Grain: one row per duplicate line of this ingest.
-- Parameters: $ingest_id, $now. Inputs: temp `ingest_dups`, `ingest_files`.
WITH final AS (
    SELECT
        $ingest_id AS ingest_id,
        f.source_file,
        f.source_sha256,
        d.line_no,
        d.id,
        d.conflict,
        d.workspace_id,
        d.metric,
        d.quantity,
        d.ts,
        d.properties,
        d.first_source_file,
        d.first_line_no,
        $now AS detected_at
    FROM temp.ingest_dups AS d
    JOIN temp.ingest_files AS f ON f.file_seq = d.file_seq
)

INSERT INTO duplicates
SELECT * FROM final
