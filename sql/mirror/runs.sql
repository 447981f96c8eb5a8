-- runs: every nightly run and its summary. Grain: one row per run.
SELECT
    run_id,
    CAST(run_date AS DATE) AS run_date,
    CAST(started_at AS TIMESTAMPTZ) AS started_at,
    CAST(finished_at AS TIMESTAMPTZ) AS finished_at,
    status,
    CAST(summary AS JSON) AS summary
FROM state.runs
