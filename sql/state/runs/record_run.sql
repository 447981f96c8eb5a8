-- record_run: insert or replace a nightly run's row (writes `runs`). Grain: one row per
-- run_id. Times are ISO 8601 UTC; summary is the run summary JSON.
INSERT INTO runs (run_id, run_date, started_at, finished_at, status, summary)
VALUES (:run_id, :run_date, :started_at, :finished_at, :status, :summary)
ON CONFLICT (run_id) DO UPDATE SET
    run_date = excluded.run_date,
    started_at = excluded.started_at,
    finished_at = excluded.finished_at,
    status = excluded.status,
    summary = excluded.summary
