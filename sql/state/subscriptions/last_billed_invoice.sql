-- subscriptions/last_billed_invoice: the finalized live invoice (open, paid or overdue:
-- invoicing's LIVE_FINALIZED) of a workspace that bills the latest days, if any; a
-- subscription change may not take effect on or before its period_end
-- (docs/billing-rules.md §8). Reads: invoices. Grain: at most one row.
-- Parameters: :workspace_id.
SELECT number, period_end
FROM invoices
WHERE workspace_id = :workspace_id
  AND status IN ('open', 'paid', 'overdue')
ORDER BY period_end DESC
LIMIT 1
