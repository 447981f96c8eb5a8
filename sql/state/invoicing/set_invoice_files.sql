-- set_invoice_files: the paths of an invoice's published JSON and PDF (writes
-- `invoices`). Grain: one row, by :id. Parameters: :id, :json_path, :pdf_path.
UPDATE invoices
SET json_path = :json_path,
    pdf_path = :pdf_path
WHERE id = :id
