-- invoice_file_paths: the published files of every invoice that has any (reads
-- `invoices`). Grain: one row per invoice: id, json_path, pdf_path (paths as recorded).
SELECT id, json_path, pdf_path
FROM invoices
WHERE json_path IS NOT NULL OR pdf_path IS NOT NULL
