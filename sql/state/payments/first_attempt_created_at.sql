-- first_attempt_created_at: when an invoice was first tried (the dunning schedule's
-- day 0 is this time's UTC date).
-- Reads payment_attempts. Grain: one row (or none, before any attempt).
-- created_at: ISO 8601 UTC text.
-- Parameters: :invoice_id.
SELECT created_at
FROM payment_attempts
WHERE invoice_id = :invoice_id
ORDER BY attempt_no
LIMIT 1
