-- live_invoice: the live (not void) invoice of a workspace for exactly one billing period
-- (debit invoices of a rerate aside)
-- (reads `invoices`). Grain: at most one row (unique index invoices_live_period).
-- Parameters: :workspace_id, :period_start, :period_end (ISO dates, inclusive).
SELECT *
FROM invoices
WHERE workspace_id = :workspace_id
  AND period_start = :period_start
  AND period_end = :period_end
  AND status <> 'void'
  AND kind <> 'debit'
