-- insert_reconcile_finding: one mismatch a reconciliation found (writes
-- `reconcile_findings`). Grain: one row per mismatch. expected/found as text (amounts in
-- minor units, statuses).
INSERT INTO reconcile_findings (
    reconcile_id, kind, invoice_id, reference, expected, found, message
) VALUES (
    :reconcile_id, :kind, :invoice_id, :reference, :expected, :found, :message
)
