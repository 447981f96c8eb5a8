-- next_invoice_number: take the next invoice number of :year (writes `invoice_numbers`).
-- Grain: one row per year; returns `last`, the number taken (1, 2, ... without gaps).
-- Run inside the transaction that finalizes the invoice: a rollback gives the number back.
INSERT INTO invoice_numbers (year, last)
VALUES (:year, 1)
ON CONFLICT (year) DO UPDATE SET last = invoice_numbers.last + 1
RETURNING last
