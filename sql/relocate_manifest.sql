-- relocate_manifest: a home moved or copied (billing-batch lake relocate) keeps knowing
-- which landing files it ingested. Grain: one ingest_manifest row per file per ingest;
-- the rows whose source_file lies under the former home ($old_prefix, ending in '/')
-- get the same path under this home ($new_prefix). No units (paths). Idempotent: a
-- rerun finds no row under the former home any more.
UPDATE ingest_manifest
SET source_file = $new_prefix || source_file[length($old_prefix) + 1:]
WHERE starts_with(source_file, $old_prefix)
