-- ingest_commit_manifest: one manifest row per file of this ingest, committed in the
-- same transaction as its events. Grain: (ingest_id, source_file).
-- Parameters: $ingest_id, $now (started_at), $snapshot_id (the snapshot this commit
-- creates), $source_etags (ETag per file_seq, 1-based list; NULL for local files). Inputs: temp `ingest_files`, `ingest_counts` (from ingest_file_counts.sql).
WITH final AS (
    SELECT
        $ingest_id AS ingest_id,
        f.source_file,
        f.source_sha256,
        f.size_bytes,
        c.lines,
        f.total_lines - c.lines AS blank_lines,
        c.accepted,
        c.duplicates,
        c.conflicts,
        c.rejected,
        c.days,
        c.min_ts,
        c.max_ts,
        $now AS started_at,
        now() AS committed_at,
        $snapshot_id AS snapshot_id,
        list_extract($source_etags, f.file_seq + 1) AS source_etag
    FROM temp.ingest_files AS f
    JOIN temp.ingest_counts AS c ON c.file_seq = f.file_seq
)

INSERT INTO ingest_manifest
SELECT * FROM final
