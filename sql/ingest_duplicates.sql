-- ingest_duplicates: the staged lines of one ingest whose event identity is already taken.
-- Grain: one row per duplicate line (file_seq, line_no). An event's identity is its
-- workspace and id (an idempotency key is scoped to its workspace, so one workspace can
-- never make another's events count as duplicates). The first occurrence stands: an
-- identity seen in an earlier ingest (lake `events`), else the earliest line of this
-- ingest in (file_seq, line_no) order. An id-less line's identity is (source_sha256, line_no):
-- it is a duplicate when the same content was ingested before (`ingest_manifest`) or
-- appears earlier in this ingest under another name.
-- `conflict` = the duplicate's payload differs from the event that stands.
-- Inputs: temp `staged` (accepted lines, with id_hash = hash(workspace_id, id)), `ingest_files`
-- (file_seq, source_file, source_sha256) and `ingest_dup_hashes` (the id hashes staged
-- more than once); lake tables `events` and `ingest_manifest`.
-- Parameters: $history (false when no event id of the lake lies in [$min_id, $max_id],
-- the range of this ingest's ids: the history probe is skipped), $min_id, $max_id.
-- Hashes only pick candidates (64-bit pre-filter); ids are always compared exactly.
WITH candidates AS (
    -- lines whose id hash occurs more than once in this ingest
    SELECT s.file_seq, s.line_no, s.id, s.workspace_id, s.metric, s.quantity, s.ts, s.properties
    FROM staged AS s
    SEMI JOIN temp.ingest_dup_hashes AS d ON s.id_hash = d.h
),

repeated_in_ingest AS (
    SELECT
        c.*,
        row_number() OVER w AS occurrence,
        first_value(c.file_seq) OVER w AS first_file_seq,
        first_value(c.line_no) OVER w AS first_line_no,
        first_value(c.workspace_id) OVER w AS first_workspace_id,
        first_value(c.metric) OVER w AS first_metric,
        first_value(c.quantity) OVER w AS first_quantity,
        first_value(c.ts) OVER w AS first_ts,
        first_value(c.properties) OVER w AS first_properties
    FROM candidates AS c
    WINDOW w AS (PARTITION BY c.workspace_id, c.id ORDER BY c.file_seq, c.line_no)
),

standing_in_history AS (
    SELECT e.id, e.workspace_id, e.metric, e.quantity, e.ts, e.properties, e.source_file, e.line_no
    FROM events AS e
    SEMI JOIN (SELECT id_hash FROM staged WHERE $history) AS s ON s.id_hash = hash(e.workspace_id, e.id)
    WHERE $history AND e.id BETWEEN $min_id AND $max_id
),

dup_of_history AS (
    SELECT
        s.file_seq, s.line_no, s.id, s.workspace_id, s.metric, s.quantity, s.ts, s.properties,
        h.workspace_id AS first_workspace_id, h.metric AS first_metric, h.quantity AS first_quantity,
        h.ts AS first_ts, h.properties AS first_properties,
        h.source_file AS first_source_file, h.line_no AS first_line_no
    FROM staged AS s
    JOIN standing_in_history AS h ON s.id = h.id AND s.workspace_id = h.workspace_id
    WHERE $history
),

dup_within_ingest AS (
    SELECT
        r.file_seq, r.line_no, r.id, r.workspace_id, r.metric, r.quantity, r.ts, r.properties,
        r.first_workspace_id, r.first_metric, r.first_quantity, r.first_ts, r.first_properties,
        ff.source_file AS first_source_file, r.first_line_no
    FROM repeated_in_ingest AS r
    JOIN temp.ingest_files AS ff ON ff.file_seq = r.first_file_seq
    WHERE r.occurrence > 1
      AND NOT EXISTS (
          SELECT 1 FROM standing_in_history AS h WHERE h.id = r.id AND h.workspace_id = r.workspace_id
      )
),

idless_files AS (
    -- files whose content was ingested before, or earlier in this ingest under another name
    SELECT
        f.file_seq,
        coalesce(m.source_file, earlier.source_file) AS first_source_file
    FROM temp.ingest_files AS f
    LEFT JOIN (
        SELECT source_sha256, arg_min(source_file, committed_at) AS source_file
        FROM ingest_manifest GROUP BY source_sha256
    ) AS m ON m.source_sha256 = f.source_sha256
    LEFT JOIN (
        SELECT source_sha256, arg_min(source_file, file_seq) AS source_file, min(file_seq) AS first_seq
        FROM temp.ingest_files GROUP BY source_sha256
    ) AS earlier ON earlier.source_sha256 = f.source_sha256 AND earlier.first_seq < f.file_seq
    WHERE m.source_sha256 IS NOT NULL OR earlier.source_sha256 IS NOT NULL
),

dup_idless AS (
    SELECT
        s.file_seq, s.line_no, NULL::VARCHAR AS id, s.workspace_id, s.metric, s.quantity, s.ts, s.properties,
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
        (d.workspace_id IS DISTINCT FROM d.first_workspace_id
            OR d.metric IS DISTINCT FROM d.first_metric
            OR d.quantity IS DISTINCT FROM d.first_quantity
            OR d.ts IS DISTINCT FROM d.first_ts
            OR CAST(d.properties AS VARCHAR) IS DISTINCT FROM CAST(d.first_properties AS VARCHAR)) AS conflict,
        d.workspace_id,
        d.metric,
        d.quantity,
        d.ts,
        d.properties,
        d.first_source_file,
        d.first_line_no
    FROM all_dups AS d
)

SELECT * FROM final
