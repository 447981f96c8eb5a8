-- rejects_by_reason: rejected input lines per UTC day of rejection and kind of reason.
-- Grain: day x reason_kind. reason_kind is the reason without its specifics (what follows
-- ':', ',', '(' or a quote), e.g. 'invalid JSON', 'unknown metric', 'quantity must not be
-- negative'. Units: lines = rejected lines; files = distinct source files (by content
-- hash); example = one full reason of the group.
CREATE OR REPLACE VIEW rejects_by_reason AS
WITH rejected AS (
    SELECT
        CAST(timezone('UTC', rejected_at) AS DATE) AS day,
        reason,
        source_sha256
    FROM rejects
),

kinds AS (
    SELECT
        day,
        trim(regexp_extract(reason, '^[^:,"(]*')) AS reason_kind,
        reason,
        source_sha256
    FROM rejected
),

final AS (
    SELECT
        day,
        reason_kind,
        count(*) AS lines,
        count(DISTINCT source_sha256) AS files,
        min(reason) AS example
    FROM kinds
    GROUP BY day, reason_kind
)

SELECT * FROM final
