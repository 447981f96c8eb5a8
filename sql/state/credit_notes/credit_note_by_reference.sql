-- credit_note_by_reference: the credit note whose id or number is :reference (reads
-- `credit_notes`, `invoices`). Grain: zero or one row. Units: as stored.
WITH notes AS (
    SELECT *
    FROM credit_notes
    WHERE id = :reference OR number = :reference
),

final AS (
    SELECT n.*, i.number AS invoice_number
    FROM notes AS n
    JOIN invoices AS i ON i.id = n.invoice_id
)

SELECT *
FROM final
