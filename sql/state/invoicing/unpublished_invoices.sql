-- unpublished_invoices: numbered (finalized) invoices missing their JSON or PDF file
-- (reads `invoices`). Grain: one row per invoice; document is the frozen invoice JSON.
SELECT id, number, document
FROM invoices
WHERE number IS NOT NULL
  AND (json_path IS NULL OR pdf_path IS NULL)
