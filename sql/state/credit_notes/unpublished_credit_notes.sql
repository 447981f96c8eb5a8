-- unpublished_credit_notes: credit notes whose JSON or PDF is not written yet (reads
-- `credit_notes`). Grain: one row per credit note; (id, number, document JSON).
SELECT id, number, document
FROM credit_notes
WHERE json_path IS NULL OR pdf_path IS NULL
ORDER BY number
