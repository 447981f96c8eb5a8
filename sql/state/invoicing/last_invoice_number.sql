-- last_invoice_number: the last invoice number taken in :year (no row: none yet).
-- Read once by a transaction that numbers many invoices (invoicing/numbering.NumberBlock),
-- under the state's write lock.
-- Grain: one row per issue year.
SELECT last
FROM invoice_numbers
WHERE year = :year
