-- rollup_log: which ingests the daily rollup has absorbed. Grain: one row per ingest_id.
-- An ingest in `ingest_manifest` without a row here is pending: the next rollup recomputes
-- its days. snapshot_id is the lake snapshot of the rollup that absorbed it.
CREATE TABLE rollup_log (
    ingest_id     VARCHAR NOT NULL,
    days          DATE[] NOT NULL,    -- UTC days the ingest added events to (recomputed)
    rolled_up_at  TIMESTAMPTZ NOT NULL,
    snapshot_id   BIGINT NOT NULL     -- the DuckLake snapshot the rollup produced
);
COMMENT ON TABLE rollup_log IS 'Ingests already absorbed by usage_daily, with the days they changed and the rollup snapshot.';
