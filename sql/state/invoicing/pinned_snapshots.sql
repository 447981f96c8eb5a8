-- pinned_snapshots: the lake snapshots invoices were rated at, never expired (reads
-- `invoices`). Grain: one row per snapshot id.
SELECT DISTINCT lake_snapshot_id
FROM invoices
WHERE lake_snapshot_id IS NOT NULL
