-- ingest_file_counts: per staged file, how its non-blank lines were accounted for.
-- Grain: one row per file_seq. accepted + duplicates + rejected = lines.
-- Inputs: temp `staged` (accepted lines), `ingest_lines` (rejected lines, with their
-- reason), `ingest_dups`, `ingest_files`.
WITH staged_counts AS (
    SELECT file_seq, count(*) AS staged
    FROM temp.staged
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

fresh_days AS (
    -- (file, day) pairs first: a few groups, so no per-row distinct-list work
    SELECT s.file_seq, s.day, min(s.ts) AS min_ts, max(s.ts) AS max_ts
    FROM temp.staged AS s
    ANTI JOIN temp.ingest_dups AS d ON d.file_seq = s.file_seq AND d.line_no = s.line_no
    GROUP BY s.file_seq, s.day
),

fresh AS (
    SELECT file_seq, list(day ORDER BY day) AS days, min(min_ts) AS min_ts, max(max_ts) AS max_ts
    FROM fresh_days
    GROUP BY file_seq
),

final AS (
    SELECT
        f.file_seq,
        coalesce(s.staged, 0) + coalesce(r.rejected, 0) AS lines,
        coalesce(r.rejected, 0) AS rejected,
        coalesce(d.duplicates, 0) AS duplicates,
        coalesce(d.conflicts, 0) AS conflicts,
        coalesce(s.staged, 0) - coalesce(d.duplicates, 0) AS accepted,
        coalesce(fr.days, []) AS days,
        fr.min_ts,
        fr.max_ts,
        r.top_reason
    FROM temp.ingest_files AS f
    LEFT JOIN staged_counts AS s ON s.file_seq = f.file_seq
    LEFT JOIN reject_counts AS r ON r.file_seq = f.file_seq
    LEFT JOIN dup_counts AS d ON d.file_seq = f.file_seq
    LEFT JOIN fresh AS fr ON fr.file_seq = f.file_seq
)

SELECT * FROM final ORDER BY file_seq
