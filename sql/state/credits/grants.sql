-- grants: credit grants, optionally of one workspace and currency (reads
-- `credit_grants`). Grain: one row per grant; amounts decimal strings (major units).
SELECT id, workspace_id, currency, amount, effective_on, expires_on, priority, reason,
       created_at
FROM credit_grants
WHERE (CAST(:workspace_id AS TEXT) IS NULL OR workspace_id = :workspace_id)
  AND (CAST(:currency AS TEXT) IS NULL OR currency = :currency)
ORDER BY workspace_id, priority, effective_on, id
