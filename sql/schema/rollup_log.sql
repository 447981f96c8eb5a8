-- rollup_log: which ingests the daily rollup has absorbed. Grain: one row per ingest_id.
CREATE TABLE rollup_log (
    ingest_id     VARCHAR NOT NULL,
    days          DATE[] NOT NULL,
    rolled_up_at  TIMESTAMPTZ NOT NULL
);
COMMENT ON TABLE rollup_log IS 'Ingests already absorbed by usage_daily, with the days they changed.';
