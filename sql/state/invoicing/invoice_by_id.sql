-- invoice_by_id: one invoice row (reads `invoices`). Grain: at most one row.
-- Amounts are decimal strings in major units; dates ISO; times ISO 8601 UTC.
-- Parameters: :id (inv_...).
SELECT *
FROM invoices
WHERE id = :id
