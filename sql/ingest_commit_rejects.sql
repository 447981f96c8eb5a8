-- ingest_commit_rejects: append this ingest's rejected lines to `rejects`.
-- Grain: one row per (source_sha256, line_no); a line already recorded by an earlier
-- ingest of the same content is not recorded twice.
-- Parameters: $ingest_id, $now. Inputs: temp `ingest_lines`, `ingest_files`.
WITH rejected AS (
    SELECT l.file_seq, l.line_no, l.reason, l.raw
    FROM temp.ingest_lines AS l
    WHERE l.reason IS NOT NULL
),

final AS (
    SELECT
        $ingest_id AS ingest_id,
        f.source_file,
        f.source_sha256,
        r.line_no,
        r.reason,
        r.raw,
        $now AS rejected_at
    FROM rejected AS r
    JOIN temp.ingest_files AS f ON f.file_seq = r.file_seq
    -- the same content under two names in one ingest: record the first file's lines only
    QUALIFY row_number() OVER (PARTITION BY f.source_sha256, r.line_no ORDER BY f.file_seq) = 1
)

INSERT INTO rejects
SELECT * FROM final
ANTI JOIN rejects AS old
    ON old.source_sha256 = final.source_sha256 AND old.line_no = final.line_no
