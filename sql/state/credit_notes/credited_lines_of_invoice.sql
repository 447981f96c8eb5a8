-- credited_lines_of_invoice: every credit note line of an invoice's credit notes, with
-- the note's tax (reads `credit_notes`, `credit_note_lines`). Grain: one row per credit
-- note line. Units: decimal strings, major units. The caller sums them exactly.
WITH notes AS (
    SELECT id, tax
    FROM credit_notes
    WHERE invoice_id = :invoice_id
),

final AS (
    SELECT n.id AS credit_note_id, n.tax, l.line_no, l.invoice_line_no, l.quantity, l.amount
    FROM notes AS n
    JOIN credit_note_lines AS l ON l.credit_note_id = n.id
)

SELECT credit_note_id, tax, line_no, invoice_line_no, quantity, amount
FROM final
ORDER BY credit_note_id, line_no
