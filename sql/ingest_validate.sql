-- ingest_validate: parse and validate one chunk of raw lines.
-- Grain: one row per input line of the chunk (`chunk`: line_no BIGINT, raw VARCHAR with
-- the line's newline replaced by a space, bad_utf8 BOOLEAN). Blank lines come out with
-- reason 'blank' and are skipped by the caller; every other line either has
-- reason NULL (accepted for dedupe) or a human-readable reason.
-- Parameters: $metrics (JSON string tokens of the known metrics, e.g. '"api_calls"'),
-- $whole (for each, whether its quantities must be whole numbers), $max_id_length.
-- Quantities are exact: integers go through UBIGINT, other numbers through DECIMAL(38,9)
-- and must round-trip (no more than 9 decimal places, at most ~15 significant digits).
WITH chunk_lines AS (
    SELECT line_no, raw, bad_utf8 FROM chunk
),

metric_catalogue AS (
    SELECT token, whole FROM (SELECT unnest($metrics) AS token, unnest($whole) AS whole)
),

parsed AS (
    SELECT
        line_no,
        raw,
        bad_utf8,
        try(json_transform(raw, '{"id":"JSON","workspaceId":"JSON","metric":"JSON","quantity":"JSON","timestamp":"JSON","properties":"JSON"}')) AS r
    FROM chunk_lines
),

fields AS (
    SELECT
        line_no,
        raw,
        bad_utf8,
        r,
        CAST(r.quantity AS VARCHAR) AS q_text,
        r.timestamp[2:-2] AS ts_text
    FROM parsed
),

typed AS (
    SELECT
        f.*,
        m.whole,
        -- fast path for plain integers (a cast of '12.5' to UBIGINT would round)
        CASE WHEN NOT (contains(q_text, '.') OR contains(q_text, 'e') OR contains(q_text, 'E'))
             THEN try_cast(q_text AS UBIGINT) END AS q_int,
        -- strict ISO 8601 with a zone: the common shape ('...T..:..:..[.fff]Z') is checked
        -- by position; anything else goes through the full regular expression
        CASE WHEN (right(ts_text, 1) = 'Z' AND substr(ts_text, 5, 1) = '-' AND substr(ts_text, 8, 1) = '-'
                   AND substr(ts_text, 11, 1) = 'T' AND substr(ts_text, 14, 1) = ':'
                   AND substr(ts_text, 17, 1) = ':' AND (length(ts_text) = 20 OR substr(ts_text, 20, 1) = '.'))
                  OR regexp_matches(ts_text, '^\d{4}-\d{2}-\d{2}[Tt ]([01]\d|2[0-3]):[0-5]\d:[0-5]\d(\.\d{1,9})?([Zz]|[+-]([01]\d|2[0-3])(:?[0-5]\d)?)$')
             THEN coalesce(try_cast(ts_text AS TIMESTAMPTZ), try_cast(upper(ts_text) AS TIMESTAMPTZ)) END AS ts
    FROM fields AS f
    LEFT JOIN metric_catalogue AS m ON m.token = f.r.metric
),

quantities AS (
    SELECT
        *,
        coalesce(
            CAST(q_int AS DECIMAL(38, 9)),
            CASE WHEN left(q_text, 1) IN ('-', '0', '1', '2', '3', '4', '5', '6', '7', '8', '9', 'N', 'I')
                 THEN try_cast(r.quantity AS DECIMAL(38, 9)) END
        ) AS qty
    FROM typed
),

checked AS (
    SELECT
        *,
        CASE
            -- fast path: one conjunction that every valid line satisfies
            WHEN bad_utf8 IS NOT TRUE
                AND ts IS NOT NULL
                AND whole IS NOT NULL
                AND (q_int IS NOT NULL
                     OR (qty >= 0 AND CAST(qty AS DOUBLE) = CAST(r.quantity AS DOUBLE)
                         AND (NOT whole OR qty = floor(qty))))
                AND regexp_matches(r.workspaceId, '^"[A-Za-z0-9_.\-]{1,64}"$')
                AND (r.id IS NULL OR r.id = 'null'
                     OR (left(r.id, 1) = '"' AND r.id <> '""' AND length(r.id) - 2 <= $max_id_length))
                AND (r.properties IS NULL OR r.properties = 'null' OR left(r.properties, 1) = '{')
                THEN NULL
            -- slow path: the first failing rule names the reason
            WHEN bad_utf8 THEN 'not valid UTF-8'
            WHEN r IS NULL THEN CASE WHEN regexp_matches(raw, '^\s*$') THEN 'blank' ELSE 'invalid JSON' END
            WHEN r.workspaceId IS NULL AND json_type(raw) <> 'OBJECT'
                THEN 'not a JSON object (got ' || lower(json_type(raw)) || ')'
            WHEN r.workspaceId IS NULL OR r.workspaceId = 'null' THEN 'missing field workspaceId'
            WHEN NOT regexp_matches(r.workspaceId, '^"[A-Za-z0-9_.\-]{1,64}"$')
                THEN 'invalid workspaceId ' || left(r.workspaceId, 80) || ': expected 1-64 letters, digits, ''_'', ''-'' or ''.'''
            WHEN r.metric IS NULL OR r.metric = 'null' THEN 'missing field metric'
            WHEN whole IS NULL THEN 'unknown metric ' || left(r.metric, 80)
            WHEN r.quantity IS NULL OR r.quantity = 'null' THEN 'missing field quantity'
            WHEN left(q_text, 1) NOT IN ('-', '0', '1', '2', '3', '4', '5', '6', '7', '8', '9', 'N', 'I')
                THEN 'quantity must be a number, got ' || left(q_text, 40)
            WHEN qty IS NULL AND NOT isfinite(try_cast(r.quantity AS DOUBLE))
                THEN 'quantity must be a finite number, got ' || left(q_text, 40)
            WHEN qty IS NULL THEN 'quantity too large: ' || left(q_text, 40)
            WHEN qty < 0 THEN 'quantity must not be negative, got ' || q_text
            WHEN q_int IS NULL AND CAST(qty AS DOUBLE) <> CAST(r.quantity AS DOUBLE)
                THEN 'quantity has more precision than 9 decimal places: ' || q_text
            WHEN whole AND qty <> floor(qty)
                THEN 'quantity must be a whole number for metric ' || r.metric || ', got ' || q_text
            WHEN r.timestamp IS NULL OR r.timestamp = 'null' THEN 'missing field timestamp'
            WHEN left(r.timestamp, 1) <> '"' THEN 'timestamp must be an ISO 8601 string, got ' || left(r.timestamp, 40)
            WHEN ts IS NULL AND regexp_matches(ts_text, '^\d{4}-\d{2}-\d{2}([Tt ]\d{2}:\d{2}(:\d{2}(\.\d+)?)?)?$')
                THEN 'timestamp has no time zone (add Z or an offset such as +01:00): ' || left(r.timestamp, 60)
            WHEN ts IS NULL THEN 'timestamp is not a valid ISO 8601 date-time with zone: ' || left(r.timestamp, 60)
            WHEN r.id IS NOT NULL AND r.id <> 'null' AND (left(r.id, 1) <> '"' OR r.id = '""')
                THEN 'id must be a non-empty string, got ' || left(r.id, 40)
            WHEN r.id IS NOT NULL AND length(r.id) - 2 > $max_id_length
                THEN 'id longer than ' || $max_id_length || ' characters'
            WHEN r.properties IS NOT NULL AND r.properties <> 'null' AND left(r.properties, 1) <> '{'
                THEN 'properties must be a JSON object'
        END AS reason
    FROM quantities
),

final AS (
    SELECT
        line_no,
        reason,
        CASE WHEN reason IS NULL AND r.id IS NOT NULL AND r.id <> 'null'
             THEN CASE WHEN contains(r.id, '\') THEN r.id ->> '$' ELSE r.id[2:-2] END END AS id,
        CASE WHEN reason IS NULL THEN r.workspaceId[2:-2] END AS workspace_id,
        CASE WHEN reason IS NULL THEN r.metric[2:-2] END AS metric,
        CASE WHEN reason IS NULL THEN qty END AS quantity,
        CASE WHEN reason IS NULL THEN ts END AS ts,
        CASE WHEN reason IS NULL AND r.properties <> 'null' THEN r.properties END AS properties,
        CASE WHEN reason IS NOT NULL AND reason <> 'blank'
             THEN regexp_replace(left(raw, length(raw) - 1), '\r$', '') END AS raw
    FROM checked
)

SELECT * FROM final
