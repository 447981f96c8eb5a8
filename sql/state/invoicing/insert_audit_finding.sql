-- insert_audit_finding: one finding of an audit (writes `audit_findings`; run per
-- finding). Grain: one row per finding. Quantities are decimal strings (units, or days
-- for base_fee and minimum), NULL when not applicable; dates ISO; metric '' for none.
INSERT INTO audit_findings (
    audit_id, workspace_id, period_start, period_end, segment_start, segment_end, kind,
    metric, lake_quantity, billed_quantity, status, reason
) VALUES (
    :audit_id, :workspace_id, :period_start, :period_end, :segment_start, :segment_end, :kind,
    :metric, :lake_quantity, :billed_quantity, :status, :reason
)
