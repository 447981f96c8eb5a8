-- ingest_daily: ingest volume per UTC day of commit. Grain: one row per day.
-- Units: ingests and files are counts; lines, accepted, duplicates (conflicts among them:
-- a different payload under a known id), rejected and blank_lines are input lines;
-- bytes = size of the files on disk (compressed size for .gz); event_days = distinct UTC
-- days that received accepted events.
CREATE OR REPLACE VIEW ingest_daily AS
WITH manifest AS (
    SELECT
        CAST(timezone('UTC', committed_at) AS DATE) AS day,
        ingest_id,
        size_bytes,
        lines,
        blank_lines,
        accepted,
        duplicates,
        conflicts,
        rejected,
        days
    FROM ingest_manifest
),

volumes AS (
    SELECT
        day,
        count(DISTINCT ingest_id) AS ingests,
        count(*) AS files,
        CAST(sum(lines) AS BIGINT) AS lines,
        CAST(sum(accepted) AS BIGINT) AS accepted,
        CAST(sum(duplicates) AS BIGINT) AS duplicates,
        CAST(sum(conflicts) AS BIGINT) AS conflicts,
        CAST(sum(rejected) AS BIGINT) AS rejected,
        CAST(sum(blank_lines) AS BIGINT) AS blank_lines,
        CAST(sum(size_bytes) AS BIGINT) AS bytes
    FROM manifest
    GROUP BY day
),

touched AS (
    SELECT day, count(DISTINCT event_day) AS event_days
    FROM (SELECT day, unnest(days) AS event_day FROM manifest)
    GROUP BY day
),

final AS (
    SELECT v.*, coalesce(t.event_days, 0) AS event_days
    FROM volumes AS v
    LEFT JOIN touched AS t ON t.day = v.day
)

SELECT * FROM final
