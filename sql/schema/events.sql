-- events: every accepted usage event, exactly once.
-- Grain: one row per event identity (the producer's `id`, or for an id-less line its
-- source file's SHA-256 and line number). Partitioned by `day` (UTC date of `ts`); rows
-- are written in arrival order (no sort: filter on `day` first).
-- Units: `quantity` in the metric's unit (counts; GB for storage), exact DECIMAL(38,9).
CREATE TABLE events (
    id            VARCHAR,          -- producer's idempotency key (NULL when the line had none)
    workspace_id  VARCHAR NOT NULL,
    metric        VARCHAR NOT NULL,
    quantity      DECIMAL(38, 9) NOT NULL,
    ts            TIMESTAMPTZ NOT NULL,
    day           DATE NOT NULL,
    properties    JSON,
    source_file   VARCHAR NOT NULL,
    source_sha256 VARCHAR NOT NULL,
    line_no       BIGINT NOT NULL,
    ingest_id     VARCHAR NOT NULL,
    ingested_at   TIMESTAMPTZ NOT NULL
);
ALTER TABLE events SET PARTITIONED BY (day);
COMMENT ON TABLE events IS 'Accepted usage events, one row per event identity; partitioned by UTC day. Quantity in the metric unit (DECIMAL(38,9)).';
COMMENT ON COLUMN events.id IS 'Producer idempotency key; NULL for id-less lines (identity = source_sha256 + line_no)';
COMMENT ON COLUMN events.day IS 'UTC date of ts (partition key)';
COMMENT ON COLUMN events.quantity IS 'Quantity in the metric unit: a count, or GB for storage';
COMMENT ON COLUMN events.source_sha256 IS 'SHA-256 of the source file content (decompressed)';
COMMENT ON COLUMN events.line_no IS '1-based line number in the source file';
