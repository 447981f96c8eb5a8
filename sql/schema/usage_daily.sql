-- usage_daily: the daily rollup. Grain: workspace_id x metric x day (UTC).
-- `quantity` follows the metric's aggregation: sum for counts, the largest reading for
-- the storage gauge (GB), number of events for `count`, max, latest, or distinct
-- property values for `unique_count`. Refreshed incrementally: only days that received
-- new events are recomputed.
CREATE TABLE usage_daily (
    workspace_id  VARCHAR NOT NULL,
    metric        VARCHAR NOT NULL,
    day           DATE NOT NULL,
    quantity      DECIMAL(38, 9) NOT NULL,
    events        BIGINT NOT NULL,
    first_ts      TIMESTAMPTZ NOT NULL,
    last_ts       TIMESTAMPTZ NOT NULL
);
COMMENT ON TABLE usage_daily IS 'Daily usage per workspace and metric (UTC days). quantity per the metric aggregation: sum of counts, max GB reading for storage.';
