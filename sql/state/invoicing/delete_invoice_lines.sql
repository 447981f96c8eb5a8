-- delete_invoice_lines: drop an invoice's lines before they are written again
-- (writes `invoice_lines`). Grain: every line of :invoice_id.
DELETE FROM invoice_lines
WHERE invoice_id = :invoice_id
