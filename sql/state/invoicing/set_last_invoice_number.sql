-- set_last_invoice_number: record :last as the last invoice number taken in :year, once
-- at the end of a transaction that numbered many invoices (invoicing/numbering.NumberBlock).
-- Never lowers it: the write lock is held since the block read it.
INSERT INTO invoice_numbers (year, last)
VALUES (:year, :last)
ON CONFLICT (year) DO UPDATE SET last = excluded.last
WHERE invoice_numbers.last < excluded.last
