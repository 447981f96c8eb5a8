-- live_invoice_periods: the status of each live (not void) invoice by workspace and
-- billing period (reads `invoices`). Grain: one row per (workspace_id, period_start,
-- period_end) (unique index invoices_live_period). Dates ISO.
-- Parameters: :workspace_id (NULL = every workspace; a range, as in ledger_rows, so that
-- the index serves a single workspace).
SELECT workspace_id, period_start, period_end, status
FROM invoices
WHERE status <> 'void'
  AND kind <> 'debit'  -- a rerate's debit invoice is not the period's invoice
  AND workspace_id
      BETWEEN COALESCE(:workspace_id, (SELECT MIN(workspace_id) FROM invoices))
          AND COALESCE(:workspace_id, (SELECT MAX(workspace_id) FROM invoices))
