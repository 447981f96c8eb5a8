-- all_refunds: every refund with its credit note's number and total (reads `refunds`,
-- `credit_notes`). Grain: one row per refund. Units: amount_minor (minor unit), the
-- credit note's total_minor likewise.
WITH refund_rows AS (
    SELECT *
    FROM refunds
),

final AS (
    SELECT r.*, n.number AS credit_note_number, n.total_minor AS credit_note_total_minor
    FROM refund_rows AS r
    LEFT JOIN credit_notes AS n ON n.id = r.credit_note_id
)

SELECT *
FROM final
ORDER BY created_at, id
