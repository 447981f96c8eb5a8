-- rejects: every rejected input line, kept with its reason and raw text.
-- Grain: one row per (source_sha256, line_no); a file ingested twice does not add its
-- rejected lines twice. Also written as JSON lines under $BILLING_HOME/rejects/.
CREATE TABLE rejects (
    ingest_id     VARCHAR NOT NULL,
    source_file   VARCHAR NOT NULL,
    source_sha256 VARCHAR NOT NULL,
    line_no       BIGINT NOT NULL,
    reason        VARCHAR NOT NULL,
    raw           VARCHAR NOT NULL,
    rejected_at   TIMESTAMPTZ NOT NULL
);
COMMENT ON TABLE rejects IS 'Rejected input lines with file, line number, reason and raw text (one row per source_sha256 + line_no).';
COMMENT ON COLUMN rejects.reason IS 'Why the line was rejected, e.g. "invalid JSON", "unknown metric ''foo''"';
