-- rollup_gauge_insert: write the new content of the touched `gauge_monthly` year
-- partitions (computed by rollup_gauge_monthly.sql into temp table `rollup_gauge`).
-- Grain: workspace_id x metric x month.
INSERT INTO gauge_monthly (workspace_id, metric, month, last_day, quantity)
SELECT workspace_id, metric, month, last_day, quantity
FROM temp.rollup_gauge
ORDER BY month, workspace_id, metric
