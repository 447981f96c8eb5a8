-- ingest_file_counts: per staged file, how its non-blank lines were accounted for.
-- Grain: one row per file_seq. accepted + duplicates + rejected = lines.
-- Run after the duplicates were taken out of `staged`: `ingest_days` (file_seq, day, n,
-- min_ts, max_ts: one scan of `staged`) holds the new events; `ingest_dups` the
-- duplicates; `ingest_lines` the rejected lines with their reason.
-- Inputs: temp `ingest_days`, `ingest_dups`, `ingest_lines`, `ingest_files`.
WITH fresh AS (
    SELECT
        file_seq,
        sum(n) AS accepted,
        list(day ORDER BY day) AS days,
        min(min_ts) AS min_ts,
        max(max_ts) AS max_ts
    FROM temp.ingest_days
    GROUP BY file_seq
),

reject_counts AS (
    SELECT file_seq, count(*) AS rejected, mode(reason) AS top_reason
    FROM temp.ingest_lines
    WHERE reason IS NOT NULL
    GROUP BY file_seq
),

dup_counts AS (
    SELECT
        file_seq,
        count(*) AS duplicates,
        count(*) FILTER (WHERE conflict) AS conflicts
    FROM temp.ingest_dups
    GROUP BY file_seq
),

final AS (
    SELECT
        f.file_seq,
        coalesce(a.accepted, 0) + coalesce(d.duplicates, 0) + coalesce(r.rejected, 0) AS lines,
        coalesce(r.rejected, 0) AS rejected,
        coalesce(d.duplicates, 0) AS duplicates,
        coalesce(d.conflicts, 0) AS conflicts,
        coalesce(a.accepted, 0) AS accepted,
        coalesce(a.days, []) AS days,
        a.min_ts,
        a.max_ts,
        r.top_reason
    FROM temp.ingest_files AS f
    LEFT JOIN fresh AS a ON a.file_seq = f.file_seq
    LEFT JOIN reject_counts AS r ON r.file_seq = f.file_seq
    LEFT JOIN dup_counts AS d ON d.file_seq = f.file_seq
)

SELECT * FROM final ORDER BY file_seq
