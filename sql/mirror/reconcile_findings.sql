-- reconcile_findings: every mismatch of each three-way reconciliation (lake usage vs
-- invoices vs Stripe), with its run. Grain: one row per mismatch. kind: usage_vs_invoices
-- | paid_without_payment | payment_not_found | payment_not_succeeded | payment_amount
-- | duplicate_payment | unrecorded_payment | refund_not_found | refund_amount
-- | refund_status | refund_without_credit_note. expected/found: minor units or statuses.
SELECT
    f.reconcile_id,
    CAST(r.at AS TIMESTAMPTZ) AS reconciled_at,
    CAST(r.period_start AS DATE) AS period_start,
    CAST(r.period_end AS DATE) AS period_end,
    f.kind,
    f.invoice_id,
    f.reference,
    f.expected,
    f.found,
    f.message
FROM state.reconcile_findings AS f
JOIN state.reconcile_runs AS r ON r.reconcile_id = f.reconcile_id
