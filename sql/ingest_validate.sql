-- ingest_validate: parse and validate raw lines.
-- Grain: one row per input line (`chunk`: file_seq INTEGER, line_no BIGINT, raw VARCHAR
-- holding the line with its newline, bad_utf8 BOOLEAN). Blank lines come out with reason 'blank'
-- and are skipped by the caller; every other line either has reason NULL (accepted for
-- dedupe) or a human-readable reason. `day` is the UTC date of `ts`; `id_hash` = hash(workspace_id, id).
-- Parameters: $metrics (JSON string tokens of the known metrics, e.g. '"api_calls"'),
-- $metric_names (the same metrics, plain), $whole (for each, whether its quantities must be
-- whole numbers), $max_id_length, $fast (false = every line takes the full rule chain).
-- Quantities are exact: integers go through UBIGINT, other numbers through DECIMAL(38,9)
-- and must round-trip (no more than 9 decimal places, at most ~15 significant digits).
--
-- Two paths, one answer. The full rule chain (`slow_*` and `checked`) names the first rule
-- a line breaks. In front of it, `fast_ok` recognises the usual shape of a valid line with
-- a few cheap tests (plain-digit quantity, `YYYY-MM-DDTHH:MM:SS` with `Z` or `±HH:MM`,
-- known metric, plain string id): whatever it accepts the chain accepts too, with the same
-- values, so a line it accepts skips the chain. CASE evaluates a branch only on the rows
-- that reach it, so the chain only costs for the lines the fast path does not vouch for.
-- tests/test_ingest.py checks fast = slow on adversarial lines.
WITH parsed AS (
    SELECT
        file_seq,
        line_no,
        raw,
        bad_utf8,
        try(json_transform(raw, '{"id":"JSON","workspaceId":"JSON","metric":"JSON","quantity":"JSON","timestamp":"JSON","properties":"JSON"}')) AS r
    FROM chunk
),

fast_fields AS (
    SELECT
        *,
        list_position($metrics, r.metric) AS metric_pos,
        -- plain digits: the whole UBIGINT range, nothing rounded
        CASE WHEN regexp_full_match(r.quantity, '[0-9]{1,20}')
             THEN try_cast(CAST(r.quantity AS VARCHAR) AS UBIGINT) END AS fast_q,
        -- 'YYYY-MM-DDTHH:MM:SSZ' (the chain's positional test holds), or '...±HH:MM' whose
        -- fields the chain's regular expression would accept (the cast is more lenient)
        CASE WHEN r.timestamp LIKE '"____-__-__T__:__:__Z"'
                  OR regexp_full_match(r.timestamp, '"\d{4}-\d\d-\d\dT([01]\d|2[0-3]):[0-5]\d:[0-5]\d[+-]([01]\d|2[0-3]):[0-5]\d"')
             THEN try_cast(r.timestamp AS TIMESTAMPTZ) END AS fast_ts
    FROM parsed
),

fast AS (
    SELECT
        *,
        coalesce(
            $fast
            AND bad_utf8 IS NOT TRUE
            AND metric_pos IS NOT NULL
            AND fast_q IS NOT NULL
            AND fast_ts IS NOT NULL
            AND regexp_matches(r.workspaceId, '^"[A-Za-z0-9_.\-]{1,64}"$')
            AND (r.id IS NULL
                 OR (starts_with(r.id, '"') AND strlen(r.id) BETWEEN 3 AND $max_id_length + 2
                     AND NOT contains(r.id, '\')))
            AND (r.properties IS NULL OR starts_with(r.properties, '{')),
            false
        ) AS fast_ok
    FROM fast_fields
),

slow_fields AS (
    SELECT
        *,
        list_extract($whole, metric_pos) AS whole,
        CASE WHEN NOT fast_ok THEN CAST(r.quantity AS VARCHAR) END AS q_text,
        CASE WHEN NOT fast_ok THEN r.timestamp[2:-2] END AS ts_text
    FROM fast
),

slow_typed AS (
    SELECT
        *,
        CASE
            WHEN fast_ok THEN fast_q
            -- fast path for plain integers (a cast of '12.5' to UBIGINT would round)
            WHEN NOT (contains(q_text, '.') OR contains(q_text, 'e') OR contains(q_text, 'E'))
                THEN try_cast(q_text AS UBIGINT)
        END AS q_int,
        -- strict ISO 8601 with a zone: the common shape ('...T..:..:..[.fff]Z') is checked
        -- by position; anything else goes through the full regular expression
        CASE
            WHEN fast_ok THEN fast_ts
            WHEN (right(ts_text, 1) = 'Z' AND substr(ts_text, 5, 1) = '-' AND substr(ts_text, 8, 1) = '-'
                  AND substr(ts_text, 11, 1) = 'T' AND substr(ts_text, 14, 1) = ':'
                  AND substr(ts_text, 17, 1) = ':' AND (length(ts_text) = 20 OR substr(ts_text, 20, 1) = '.'))
                 OR regexp_matches(ts_text, '^\d{4}-\d{2}-\d{2}[Tt ]([01]\d|2[0-3]):[0-5]\d:[0-5]\d(\.\d{1,9})?([Zz]|[+-]([01]\d|2[0-3])(:?[0-5]\d)?)$')
                THEN coalesce(try_cast(ts_text AS TIMESTAMPTZ), try_cast(upper(ts_text) AS TIMESTAMPTZ))
        END AS ts
    FROM slow_fields
),

quantities AS (
    SELECT
        *,
        CASE
            WHEN fast_ok THEN CAST(fast_q AS DECIMAL(38, 9))
            ELSE coalesce(
                CAST(q_int AS DECIMAL(38, 9)),
                CASE WHEN list_contains(['-', '0', '1', '2', '3', '4', '5', '6', '7', '8', '9', 'N', 'I'], left(q_text, 1))
                     THEN try_cast(r.quantity AS DECIMAL(38, 9)) END
            )
        END AS qty
    FROM slow_typed
),

checked AS (
    SELECT
        *,
        CASE
            WHEN fast_ok THEN NULL
            -- one conjunction that every valid line satisfies
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
            -- the first failing rule names the reason
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
            WHEN NOT list_contains(['-', '0', '1', '2', '3', '4', '5', '6', '7', '8', '9', 'N', 'I'], left(q_text, 1))
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

accepted AS (
    SELECT
        file_seq,
        line_no,
        reason,
        CASE WHEN reason IS NULL AND r.id IS NOT NULL AND r.id <> 'null'
             THEN CASE WHEN contains(r.id, '\') THEN r.id ->> '$' ELSE r.id[2:-2] END END AS id,
        CASE WHEN reason IS NULL THEN r.workspaceId[2:-2] END AS workspace_id,
        CASE WHEN reason IS NULL THEN list_extract($metric_names, metric_pos) END AS metric,
        CASE WHEN reason IS NULL THEN qty END AS quantity,
        CASE WHEN reason IS NULL THEN ts END AS ts,
        CASE WHEN reason IS NULL AND r.properties <> 'null' THEN r.properties END AS properties,
        CASE WHEN reason IS NOT NULL AND reason <> 'blank'
             THEN regexp_replace(left(raw, length(raw) - 1), '\r$', '') END AS raw
    FROM checked
),

final AS (
    SELECT
        file_seq,
        line_no,
        reason,
        id,
        -- the identity is (workspace, id): an id is unique within its workspace
        CASE WHEN id IS NOT NULL THEN hash(workspace_id, id) END AS id_hash,
        workspace_id,
        metric,
        quantity,
        ts,
        -- UTC day by arithmetic (a cast to DATE goes through the ICU calendar: 10x slower)
        DATE '1970-01-01' + CAST((epoch_us(ts) - CASE WHEN epoch_us(ts) < 0 THEN 86399999999 ELSE 0 END)
                                 // 86400000000 AS INTEGER) AS day,
        properties,
        raw
    FROM accepted
)

SELECT * FROM final
