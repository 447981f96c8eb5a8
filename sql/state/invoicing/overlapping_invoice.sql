-- overlapping_invoice: a live (not void) invoice of the workspace whose period overlaps
-- [:period_start, :period_end] without being exactly that period (reads `invoices`).
-- Grain: at most one row (any one of them).
-- Parameters: :workspace_id, :period_start, :period_end (ISO dates, inclusive).
SELECT *
FROM invoices
WHERE workspace_id = :workspace_id
  AND status <> 'void'
  AND period_start <= :period_end
  AND period_end >= :period_start
  AND NOT (period_start = :period_start AND period_end = :period_end)
LIMIT 1
