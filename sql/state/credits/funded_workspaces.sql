-- funded_workspaces: every workspace that has anything on account (a balance move) or a
-- prepaid credit grant: the only workspaces whose finalizing invoices need their balance
-- and grants read (invoicing/balance.apply_balances). A superset: a balance of zero or a
-- spent grant is still listed.
-- Grain: one row per workspace.
SELECT workspace_id FROM balance_transactions
UNION
SELECT workspace_id FROM credit_grants
