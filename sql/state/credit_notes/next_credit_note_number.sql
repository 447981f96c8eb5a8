-- next_credit_note_number: take the next credit note number of :year (writes
-- `credit_note_numbers`). Grain: one row per year; returns `last`, the number taken
-- (1, 2, ... without gaps). Run inside the transaction that issues the credit note: a
-- rollback gives the number back.
INSERT INTO credit_note_numbers (year, last)
VALUES (:year, 1)
ON CONFLICT (year) DO UPDATE SET last = credit_note_numbers.last + 1
RETURNING last
