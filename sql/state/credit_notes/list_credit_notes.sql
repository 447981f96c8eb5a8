-- list_credit_notes: credit notes, newest number last (reads `credit_notes`,
-- `invoices`). Grain: one row per credit note. Optional filters :workspace_id and
-- :invoice_id (NULL: any); at most :limit rows.
WITH notes AS (
    SELECT *
    FROM credit_notes
    WHERE (CAST(:workspace_id AS TEXT) IS NULL OR workspace_id = :workspace_id)
      AND (CAST(:invoice_id AS TEXT) IS NULL OR invoice_id = :invoice_id)
),

final AS (
    SELECT n.*, i.number AS invoice_number
    FROM notes AS n
    JOIN invoices AS i ON i.id = n.invoice_id
)

SELECT *
FROM final
ORDER BY issued_at, number
LIMIT :limit
