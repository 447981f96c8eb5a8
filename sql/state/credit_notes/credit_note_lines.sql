-- credit_note_lines: the lines of one credit note, in order (reads `credit_note_lines`).
-- Grain: one row per line. Units: quantity and amount decimal strings (major units).
SELECT credit_note_id, line_no, invoice_line_no, kind, description, metric, quantity, amount
FROM credit_note_lines
WHERE credit_note_id = :credit_note_id
ORDER BY line_no
