-- list_invoices: invoices by period, workspace and creation time (reads `invoices`).
-- Grain: one row per invoice, at most :limit rows.
-- Parameters: :workspace_id (NULL = every workspace), :status (NULL = every status), :limit.
SELECT *
FROM invoices
WHERE (CAST(:workspace_id AS TEXT) IS NULL OR workspace_id = :workspace_id)
  AND (CAST(:status AS TEXT) IS NULL OR status = :status)
ORDER BY period_start, workspace_id, created_at
LIMIT :limit
