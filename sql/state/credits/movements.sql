-- movements: the balance ledger of credit grants, optionally of one workspace (reads
-- `credit_ledger`). Grain: one row per movement; amount signed decimal string (major
-- units); on_date ISO.
SELECT id, grant_id, workspace_id, currency, kind, amount, invoice_id, on_date, recorded_at
FROM credit_ledger
WHERE (CAST(:workspace_id AS TEXT) IS NULL OR workspace_id = :workspace_id)
ORDER BY on_date, recorded_at, id
