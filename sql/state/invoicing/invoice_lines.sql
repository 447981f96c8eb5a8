-- invoice_lines: an invoice's lines in order (reads `invoice_lines`). Grain: one row per
-- line. Amounts, quantities and unit prices are decimal strings; detail is JSON.
-- Parameters: :invoice_id.
SELECT *
FROM invoice_lines
WHERE invoice_id = :invoice_id
ORDER BY line_no
