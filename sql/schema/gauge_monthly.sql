-- gauge_monthly: the last reading of each gauge metric per workspace and calendar month,
-- kept by the rollup so that a period's carried-forward starting value is found without
-- scanning the whole history of usage_daily.
-- Grain: workspace_id x metric (gauge metrics only) x month (its first day, UTC), one row
-- per month with at least one reading. Units: `quantity` in the metric unit (GB for
-- storage): the usage_daily value of `last_day`, the month's last day with a reading.
-- Partitioned by year; the rollup rewrites the year partitions of the months it touched.
CREATE TABLE gauge_monthly (
    workspace_id  VARCHAR NOT NULL,
    metric        VARCHAR NOT NULL,
    month         DATE NOT NULL,      -- first day of the month
    last_day      DATE NOT NULL,      -- the month's last day with a reading
    quantity      DECIMAL(38, 9) NOT NULL
);
ALTER TABLE gauge_monthly SET PARTITIONED BY (year(month));
COMMENT ON TABLE gauge_monthly IS 'Last gauge reading (e.g. storage GB) per workspace, metric and month: the value carried forward into later periods.';
COMMENT ON COLUMN gauge_monthly.quantity IS 'Value of last_day (that day''s largest reading), in the metric unit';
