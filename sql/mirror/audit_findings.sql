-- audit_findings: every difference an audit found between usage in the lake and what
-- live invoices billed. Grain: (audit_id, workspace_id, period_start, segment_start, kind,
-- metric). kind: usage | base_fee | minimum (days) | unbilled_period | ledger_mismatch;
-- status: explained (the next run bills it) | unexplained (money lost or billed twice).
SELECT
    audit_id,
    workspace_id,
    CAST(period_start AS DATE) AS period_start,
    CAST(period_end AS DATE) AS period_end,
    CAST(segment_start AS DATE) AS segment_start,
    CAST(segment_end AS DATE) AS segment_end,
    kind,
    metric,
    CAST(lake_quantity AS DECIMAL(38, 9)) AS lake_quantity,
    CAST(billed_quantity AS DECIMAL(38, 9)) AS billed_quantity,
    status,
    reason
FROM state.audit_findings
