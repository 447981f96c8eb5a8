-- balance_transactions: the customer balance's moves. Grain: one row per move. amount
-- signed in major units (credit_note: positive, applied to an invoice: negative).
SELECT
    id,
    workspace_id,
    currency,
    kind,
    CAST(amount AS DECIMAL(38, 9)) AS amount,
    credit_note_id,
    invoice_id,
    CAST(created_at AS TIMESTAMPTZ) AS created_at
FROM state.balance_transactions
