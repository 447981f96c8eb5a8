-- invoice_by_reference: the invoice whose id or number is :reference (reads `invoices`).
-- Grain: one row (ids and numbers are each unique; the caller takes the first).
-- Parameters: :reference (inv_... or INV-2024-000001).
SELECT *
FROM invoices
WHERE id = :reference OR number = :reference
