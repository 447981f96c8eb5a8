-- ingest_manifest: one row per file per ingest, committed in the same transaction as
-- the file's events. Grain: (ingest_id, source_sha256). Counts are lines; every
-- non-blank line is exactly one of accepted, duplicates, rejected. A landing file is
-- claimed by (source_file, size_bytes) on disk, (source_file, size_bytes, source_etag) on S3.
CREATE TABLE ingest_manifest (
    ingest_id     VARCHAR NOT NULL,
    source_file   VARCHAR NOT NULL,
    source_sha256 VARCHAR NOT NULL,
    size_bytes    BIGINT NOT NULL,     -- on disk (compressed size for .gz)
    lines         BIGINT NOT NULL,     -- non-blank lines
    blank_lines   BIGINT NOT NULL,
    accepted      BIGINT NOT NULL,
    duplicates    BIGINT NOT NULL,
    conflicts     BIGINT NOT NULL,
    rejected      BIGINT NOT NULL,
    days          DATE[] NOT NULL,     -- UTC days that received accepted events
    min_ts        TIMESTAMPTZ,
    max_ts        TIMESTAMPTZ,
    started_at    TIMESTAMPTZ NOT NULL,
    committed_at  TIMESTAMPTZ NOT NULL,
    snapshot_id   BIGINT NOT NULL,     -- the DuckLake snapshot this ingest produced
    source_etag   VARCHAR              -- the object's ETag (landing on object storage); NULL on disk
);
COMMENT ON TABLE ingest_manifest IS 'Each ingested file: content hash, line counts, days touched, and the lake snapshot the ingest produced.';
