-- balance_transactions: the moves of a workspace's customer balance in one currency,
-- oldest first (reads `balance_transactions`). Grain: one row per move. Units: amount a
-- signed decimal string in major units; the caller sums exactly. :currency NULL: any.
SELECT id, workspace_id, currency, kind, amount, credit_note_id, invoice_id, created_at
FROM balance_transactions
WHERE workspace_id = :workspace_id
  AND (CAST(:currency AS TEXT) IS NULL OR currency = :currency)
ORDER BY created_at, id
