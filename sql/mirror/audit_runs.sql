-- audit_runs: one row per audit (docs/billing-rules.md §10): the nightly's after
-- invoicing, or `billing-batch audit --record`. Grain: audit_id. unexplained = 0 is healthy.
SELECT
    audit_id,
    run_id,
    CAST(as_of AS DATE) AS as_of,
    lake_snapshot_id,
    CAST("at" AS TIMESTAMPTZ) AS audited_at,
    mode,
    periods_checked,
    findings,
    unexplained
FROM state.audit_runs
