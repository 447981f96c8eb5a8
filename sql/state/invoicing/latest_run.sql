-- latest_run: the newest nightly run (reads `runs`): its date and its summary (JSON,
-- whose steps.invoices.counts.lake_snapshot is the snapshot its invoices were rated at).
-- Grain: at most one row.
SELECT run_date, summary
FROM runs
ORDER BY run_date DESC, started_at DESC
LIMIT 1
