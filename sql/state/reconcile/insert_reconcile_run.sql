-- insert_reconcile_run: one run of the three-way reconciliation (writes
-- `reconcile_runs`). Grain: one row per run; period bounds ISO dates or NULL.
INSERT INTO reconcile_runs (reconcile_id, at, period_start, period_end, findings)
VALUES (:reconcile_id, :at, :period_start, :period_end, :findings)
