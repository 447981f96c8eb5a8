-- book_by_digest: one stored price-book version (reads `price_book_versions`).
-- Grain: at most one row. content is the TOML text; times ISO 8601 UTC.
-- Parameters: :digest (sha256:<hex>).
SELECT digest, version, source, content, first_used_at
FROM price_book_versions
WHERE digest = :digest
