-- insert_invoice_line: one line of an invoice (writes `invoice_lines`; run per line).
-- Grain: one row per (invoice_id, line_no). Amount, quantity and unit price are decimal
-- strings (quantity and unit price NULL for fixed charges); dates ISO; detail JSON.
INSERT INTO invoice_lines (
    invoice_id, line_no, kind, description, metric, plan, quantity, unit, unit_price,
    amount, period_start, period_end, detail
) VALUES (
    :invoice_id, :line_no, :kind, :description, :metric, :plan, :quantity, :unit, :unit_price,
    :amount, :period_start, :period_end, :detail
)
