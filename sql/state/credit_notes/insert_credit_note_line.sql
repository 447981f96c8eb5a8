-- insert_credit_note_line: one line of a credit note (writes `credit_note_lines`).
-- Grain: one row per (credit note, line). Units: quantity in the invoice line's unit
-- (days for fees), amount before tax in major units; both decimal strings.
INSERT INTO credit_note_lines (
    credit_note_id, line_no, invoice_line_no, kind, description, metric, quantity, amount
) VALUES (
    :credit_note_id, :line_no, :invoice_line_no, :kind, :description, :metric, :quantity, :amount
)
