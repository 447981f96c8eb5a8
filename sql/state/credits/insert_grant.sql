-- insert_grant: a prepaid credit grant (writes `credit_grants`). Grain: one row per
-- grant. amount: decimal string, major units of currency; dates ISO; times ISO 8601 UTC.
INSERT INTO credit_grants (
    id, workspace_id, currency, amount, effective_on, expires_on, priority, reason, created_at
) VALUES (
    :id, :workspace_id, :currency, :amount, :effective_on, :expires_on, :priority, :reason,
    :created_at
)
