-- ingest_fast: the fast path's typed read of ONE source file (DuckDB's own JSON reader).
-- Grain: one row per non-blank line, in file order: the caller creates a table from it
-- with insertion order kept, so row k (rowid) is line k + 1 (it checks that the file has
-- no blank line and that the row count is its line count; otherwise the file goes
-- through the rule chain, sql/ingest_validate.sql, instead).
-- `ok` = the line has the usual shape of a valid event, which the rule chain accepts
-- with the same values (its own expressions where it has them): an integer quantity
-- (the chain's UBIGINT test; a fractional metric also takes up to 6.9 plain digits),
-- 'YYYY-MM-DDTHH:MM:SS[.f]' with 'Z' or '±HH:MM', known metric, plain string id, object
-- or absent properties. `timestamp` is read as text: only a JSON string can have that
-- shape; the other fields are read as JSON tokens, whose type the checks need. Lines not `ok` (and lines the caller finds are not
-- one clean object) are read again and take the rule chain, which names the reason or
-- accepts them. Nothing here names a reason.
-- Units: quantity in the metric's unit (DECIMAL(38,9)); `day` = UTC date of `ts`;
-- `id_hash` = hash(workspace_id, id) (the dedupe's 64-bit pre-filter).
-- Parameters: $path, $compression ('gzip' or 'uncompressed'), $max_object_size (bytes: a
-- longer line fails the statement), $metrics (JSON tokens '"name"'), $metric_names,
-- $whole, $max_id_length.
WITH source AS (
    SELECT
        CAST(id AS VARCHAR) AS i,
        CAST(workspaceId AS VARCHAR) AS w,
        list_position($metrics, CAST(metric AS VARCHAR)) AS metric_pos,
        CAST(quantity AS VARCHAR) AS q,
        "timestamp" AS t,
        properties
    FROM read_json(
        $path,
        columns = {id: 'JSON', workspaceId: 'JSON', metric: 'JSON', quantity: 'JSON', "timestamp": 'VARCHAR', properties: 'JSON'},
        format = 'newline_delimited',
        ignore_errors = true,
        compression = $compression,
        maximum_object_size = $max_object_size
    )
),

typed AS (
    SELECT
        *,
        CASE
            WHEN NOT (contains(q, '.') OR contains(q, 'e') OR contains(q, 'E')) THEN CAST(try_cast(q AS UBIGINT) AS DECIMAL(38, 9))
            WHEN NOT list_extract($whole, metric_pos) AND regexp_full_match(q, '[0-9]{1,6}\.[0-9]{1,9}')
                THEN CAST(q AS DECIMAL(38, 9))
        END AS qty,
        CASE
            WHEN t LIKE '____-__-__T__:__:__Z' OR regexp_full_match(t, '\d{4}-\d\d-\d\dT([01]\d|2[0-3]):[0-5]\d:[0-5]\d(\.\d{1,9})?(Z|[+-]([01]\d|2[0-3]):[0-5]\d)')
                THEN try_cast(t AS TIMESTAMPTZ)
        END AS ts
    FROM source
),

checked AS (
    SELECT
        *,
        coalesce(
            metric_pos IS NOT NULL
            AND qty IS NOT NULL
            AND ts IS NOT NULL
            AND regexp_full_match(w, '"[A-Za-z0-9_.\-]{1,64}"')
            AND (i IS NULL OR (starts_with(i, '"') AND strlen(i) BETWEEN 3 AND $max_id_length + 2 AND NOT contains(i, '\')))
            AND (properties IS NULL OR starts_with(CAST(properties AS VARCHAR), '{')),
            false
        ) AS ok
    FROM typed
),

final AS (
    SELECT
        ok,
        i[2:-2] AS id,
        CASE WHEN ok AND i IS NOT NULL THEN hash(w[2:-2], i[2:-2]) END AS id_hash,
        w[2:-2] AS workspace_id,
        list_extract($metric_names, metric_pos) AS metric,
        qty AS quantity,
        ts,
        -- UTC day by arithmetic (a cast to DATE goes through the ICU calendar: 10x slower)
        DATE '1970-01-01' + CAST((epoch_us(ts) - CASE WHEN epoch_us(ts) < 0 THEN 86399999999 ELSE 0 END)
                                 // 86400000000 AS INTEGER) AS day,
        properties
    FROM checked
)

SELECT * FROM final
