-- ingest_duplicates: the staged lines of one ingest whose event identity is already taken.
-- Grain: one row per duplicate line (file_seq, line_no). The first occurrence stands:
-- an id seen in an earlier ingest (lake `events`), else the earliest line of this ingest
-- in (file_seq, line_no) order. An id-less line's identity is (source_sha256, line_no):
-- it is a duplicate when the same content was ingested before (`ingest_manifest`) or
-- appears earlier in this ingest under another name.
-- `conflict` = the duplicate's payload differs from the event that stands.
-- Inputs: temp tables `staged` (accepted lines) and `ingest_files` (file_seq, source_file,
-- source_sha256); lake tables `events` and `ingest_manifest`.
WITH staged_ids AS (
    SELECT file_seq, line_no, id, hash(id) AS h
    FROM staged
    WHERE id IS NOT NULL
),

repeated_hashes AS (
    -- cheap 64-bit pre-filter; ids are compared exactly below
    SELECT h FROM staged_ids GROUP BY h HAVING count(*) > 1
),

repeated_in_ingest AS (
    SELECT
        s.file_seq,
        s.line_no,
        s.id,
        row_number() OVER (PARTITION BY s.id ORDER BY s.file_seq, s.line_no) AS occurrence,
        first_value(s.file_seq) OVER (PARTITION BY s.id ORDER BY s.file_seq, s.line_no) AS first_file_seq,
        first_value(s.line_no) OVER (PARTITION BY s.id ORDER BY s.file_seq, s.line_no) AS first_line_no
    FROM staged_ids AS s
    SEMI JOIN repeated_hashes AS r ON s.h = r.h
),

standing_in_history AS (
    SELECT e.id, e.workspace_id, e.metric, e.quantity, e.ts, e.properties, e.source_file, e.line_no
    FROM events AS e
    WHERE e.id IS NOT NULL
      AND e.id IN (SELECT id FROM staged_ids)
),

dup_of_history AS (
    SELECT
        s.file_seq, s.line_no, s.id,
        h.workspace_id AS first_workspace_id, h.metric AS first_metric, h.quantity AS first_quantity,
        h.ts AS first_ts, h.properties AS first_properties,
        h.source_file AS first_source_file, h.line_no AS first_line_no
    FROM staged_ids AS s
    JOIN standing_in_history AS h ON s.id = h.id
),

dup_within_ingest AS (
    SELECT
        r.file_seq, r.line_no, r.id,
        f.workspace_id AS first_workspace_id, f.metric AS first_metric, f.quantity AS first_quantity,
        f.ts AS first_ts, f.properties AS first_properties,
        ff.source_file AS first_source_file, r.first_line_no
    FROM repeated_in_ingest AS r
    JOIN staged AS f ON f.file_seq = r.first_file_seq AND f.line_no = r.first_line_no
    JOIN ingest_files AS ff ON ff.file_seq = r.first_file_seq
    WHERE r.occurrence > 1
      AND r.id NOT IN (SELECT id FROM standing_in_history)
),

idless_files AS (
    -- files whose content was ingested before, or earlier in this ingest under another name
    SELECT
        f.file_seq,
        coalesce(m.source_file, earlier.source_file) AS first_source_file
    FROM ingest_files AS f
    LEFT JOIN (
        SELECT source_sha256, arg_min(source_file, committed_at) AS source_file
        FROM ingest_manifest GROUP BY source_sha256
    ) AS m ON m.source_sha256 = f.source_sha256
    LEFT JOIN (
        SELECT source_sha256, arg_min(source_file, file_seq) AS source_file, min(file_seq) AS first_seq
        FROM ingest_files GROUP BY source_sha256
    ) AS earlier ON earlier.source_sha256 = f.source_sha256 AND earlier.first_seq < f.file_seq
    WHERE m.source_sha256 IS NOT NULL OR earlier.source_sha256 IS NOT NULL
),

dup_idless AS (
    SELECT
        s.file_seq, s.line_no, NULL::VARCHAR AS id,
        s.workspace_id AS first_workspace_id, s.metric AS first_metric, s.quantity AS first_quantity,
        s.ts AS first_ts, s.properties AS first_properties,
        i.first_source_file, s.line_no AS first_line_no
    FROM staged AS s
    JOIN idless_files AS i ON i.file_seq = s.file_seq
    WHERE s.id IS NULL
),

all_dups AS (
    SELECT * FROM dup_of_history
    UNION ALL SELECT * FROM dup_within_ingest
    UNION ALL SELECT * FROM dup_idless
),

final AS (
    SELECT
        d.file_seq,
        d.line_no,
        d.id,
        (s.workspace_id IS DISTINCT FROM d.first_workspace_id
            OR s.metric IS DISTINCT FROM d.first_metric
            OR s.quantity IS DISTINCT FROM d.first_quantity
            OR s.ts IS DISTINCT FROM d.first_ts
            OR CAST(s.properties AS VARCHAR) IS DISTINCT FROM CAST(d.first_properties AS VARCHAR)) AS conflict,
        s.workspace_id,
        s.metric,
        s.quantity,
        s.ts,
        s.properties,
        d.first_source_file,
        d.first_line_no
    FROM all_dups AS d
    JOIN staged AS s ON s.file_seq = d.file_seq AND s.line_no = d.line_no
)

SELECT * FROM final
