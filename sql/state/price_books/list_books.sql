-- list_books: the stored price-book versions, oldest first (reads
-- `price_book_versions`). Grain: one row per digest; times ISO 8601 UTC.
SELECT digest, version, source, first_used_at
FROM price_book_versions
ORDER BY first_used_at, digest
