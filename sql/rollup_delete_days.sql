-- rollup_delete_days: drop the given UTC days from `usage_daily` before they are
-- recomputed (usage_daily is partitioned by day: whole partitions go, no delete files).
-- Parameters: $days (DATE[]).
DELETE FROM usage_daily
WHERE day IN (SELECT unnest(CAST($days AS DATE[])))
