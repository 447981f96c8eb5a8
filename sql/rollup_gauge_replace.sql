-- rollup_gauge_replace: drop the touched year partitions of `gauge_monthly`; the caller
-- then inserts their new content (temp table `rollup_gauge`, from rollup_gauge_monthly.sql).
-- Whole partitions go: no delete files accumulate. Parameters: $year_starts (DATE[]).
DELETE FROM gauge_monthly
WHERE CAST(date_trunc('year', month) AS DATE) IN (SELECT unnest(CAST($year_starts AS DATE[])))
