-- period_invoices: the live (not void) invoices of a workspace whose period overlaps
-- one billing period, the one check before a draft is stored or refreshed (one round
-- trip): rows with same_period = 1 cover exactly [:period_start, :period_end] (a
-- regular or final one is the period's live invoice; a debit invoice sits beside it),
-- the others overlap it and clash with it.
-- Grain: one row per invoice. Uses the index invoices_workspace.
SELECT i.*,
       CASE WHEN i.period_start = :period_start AND i.period_end = :period_end
            THEN 1 ELSE 0 END AS same_period
FROM invoices AS i
WHERE i.workspace_id = :workspace_id
  AND i.status <> 'void'
  AND i.period_start <= :period_end
  AND i.period_end >= :period_start
ORDER BY same_period DESC, i.period_start, i.id
