-- invoice_status_history: every status change of every invoice. Grain: one row per change.
SELECT
    seq,
    invoice_id,
    from_status,
    to_status,
    CAST("at" AS TIMESTAMPTZ) AS "at",
    reason
FROM state.invoice_status_history
