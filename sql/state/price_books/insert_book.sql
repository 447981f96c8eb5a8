-- insert_book: store a price-book version the first time it prices an invoice (writes
-- `price_book_versions`). Grain: one row per digest; a known digest is left as it is.
INSERT INTO price_book_versions (digest, version, source, content, first_used_at)
VALUES (:digest, :version, :source, :content, :first_used_at)
ON CONFLICT (digest) DO NOTHING
