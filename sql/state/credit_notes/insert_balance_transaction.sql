-- insert_balance_transaction: one move of a workspace's customer balance (writes
-- `balance_transactions`); idempotent by its stable id. Grain: one row per move.
-- Units: amount a signed decimal string in major units (credit positive, applied
-- negative); created_at ISO 8601 UTC.
INSERT INTO balance_transactions (
    id, workspace_id, currency, kind, amount, credit_note_id, invoice_id, created_at
) VALUES (
    :id, :workspace_id, :currency, :kind, :amount, :credit_note_id, :invoice_id, :created_at
)
ON CONFLICT (id) DO NOTHING
