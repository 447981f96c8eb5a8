-- uncharged_invoices: open or overdue invoices with an amount due and no payment attempt
-- yet (reads `invoices`, `payment_attempts`). Grain: one row per invoice (`id`), by number.
SELECT i.id
FROM invoices AS i
WHERE i.status IN ('open', 'overdue')
  AND i.total_minor > 0
  AND NOT EXISTS (SELECT 1 FROM payment_attempts AS a WHERE a.invoice_id = i.id)
ORDER BY i.number
