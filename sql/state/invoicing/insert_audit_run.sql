-- insert_audit_run: one run of the audit and its counts (writes `audit_runs`). Grain: one
-- row per audit_id. Dates ISO, :at ISO 8601 UTC; counts are integers.
INSERT INTO audit_runs (
    audit_id, run_id, as_of, lake_snapshot_id, at, mode, periods_checked, findings,
    unexplained
) VALUES (
    :audit_id, :run_id, :as_of, :lake_snapshot_id, :at, :mode, :periods_checked, :findings,
    :unexplained
)
