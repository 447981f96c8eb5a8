-- usage_daily: the daily rollup of `events`. Grain: workspace_id x metric x day (UTC),
-- one row per combination with at least one event that day.
-- Units: `quantity` in the metric's unit (a count; GB for storage), exact DECIMAL(38,9),
-- computed per the metric's `aggregation` (recorded on the row): sum = sum of the day's
-- quantities; gauge and max = the day's largest quantity; count = number of events;
-- latest = quantity of the day's last event by timestamp (same timestamp: the largest);
-- unique_count = distinct values of properties.<property>.
-- Partitioned by `day`; refreshed incrementally (billing_batch.usage.refresh_rollup):
-- only days that received new events are recomputed, a whole day partition at a time.
CREATE TABLE usage_daily (
    workspace_id  VARCHAR NOT NULL,
    metric        VARCHAR NOT NULL,
    day           DATE NOT NULL,
    quantity      DECIMAL(38, 9) NOT NULL,
    events        BIGINT NOT NULL,    -- events of the day behind this row
    aggregation   VARCHAR NOT NULL,   -- sum | gauge | count | max | latest | unique_count
    property      VARCHAR             -- unique_count only: the counted property
);
ALTER TABLE usage_daily SET PARTITIONED BY (day);
COMMENT ON TABLE usage_daily IS 'Daily usage per workspace, metric and UTC day (partitioned by day). quantity follows the row''s aggregation: sum of quantities (counts), largest reading (gauge, GB for storage), number of events, max, latest value, or distinct property values.';
COMMENT ON COLUMN usage_daily.quantity IS 'The day''s quantity in the metric unit, per `aggregation` (DECIMAL(38,9), exact)';
COMMENT ON COLUMN usage_daily.events IS 'Number of accepted events of that workspace, metric and day';
COMMENT ON COLUMN usage_daily.aggregation IS 'How quantity was computed: sum | gauge | count | max | latest | unique_count';
COMMENT ON COLUMN usage_daily.property IS 'For unique_count: the property of events.properties whose distinct values are counted';
