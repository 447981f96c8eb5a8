-- invoices_to_reconcile: finalized invoices whose period starts in [:start, :end]
-- (NULL: every one), with what Stripe should show for them (reads `invoices`). Grain:
-- one row per invoice. Units: total and amount_due decimal strings in major units
-- (amount_due NULL: the total).
SELECT id, number, workspace_id, status, currency, total, amount_due, payment_intent_id,
       period_start
FROM invoices
WHERE number IS NOT NULL
  AND (CAST(:start AS TEXT) IS NULL OR period_start >= :start)
  AND (CAST(:end AS TEXT) IS NULL OR period_start <= :end)
ORDER BY period_start, number
