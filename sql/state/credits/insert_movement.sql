-- insert_movement: one movement of a grant's balance (writes `credit_ledger`). Grain:
-- one row per (grant, kind, invoice); the id is deterministic, so a rerun adds nothing.
-- amount: signed decimal string, major units; on_date ISO; recorded_at ISO 8601 UTC.
INSERT INTO credit_ledger (
    id, grant_id, workspace_id, currency, kind, amount, invoice_id, on_date, recorded_at
) VALUES (
    :id, :grant_id, :workspace_id, :currency, :kind, :amount, :invoice_id, :on_date,
    :recorded_at
)
ON CONFLICT (id) DO NOTHING
