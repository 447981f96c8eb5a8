-- duplicates: every line whose event identity was already taken (earlier in the same
-- file, in an earlier file, or in an earlier run). The first occurrence stands and is
-- named by first_source_file/first_line_no; `conflict` is true when this line's
-- payload (workspace, metric, quantity, timestamp, properties) differs from it.
-- Grain: one row per duplicate line (source_sha256, line_no, ingest_id).
CREATE TABLE duplicates (
    ingest_id         VARCHAR NOT NULL,
    source_file       VARCHAR NOT NULL,
    source_sha256     VARCHAR NOT NULL,
    line_no           BIGINT NOT NULL,
    id                VARCHAR,            -- NULL for an id-less line of a file seen before
    conflict          BOOLEAN NOT NULL,
    workspace_id      VARCHAR NOT NULL,   -- this line's payload, as sent
    metric            VARCHAR NOT NULL,
    quantity          DECIMAL(38, 9) NOT NULL,
    ts                TIMESTAMPTZ NOT NULL,
    properties        JSON,
    first_source_file VARCHAR NOT NULL,   -- where the standing event came from
    first_line_no     BIGINT NOT NULL,
    detected_at       TIMESTAMPTZ NOT NULL
);
COMMENT ON TABLE duplicates IS 'Lines whose event identity was already ingested; the first stands. conflict = payload differs from the standing event.';
