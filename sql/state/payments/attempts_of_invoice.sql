-- attempts_of_invoice: every payment attempt of one invoice, oldest first.
-- Reads payment_attempts. Grain: one row per attempt (invoice_id, attempt_no).
-- amount_minor in the currency's minor unit; times ISO 8601 UTC text ('...Z').
-- Parameters: :invoice_id.
SELECT
    id,
    invoice_id,
    attempt_no,
    idempotency_key,
    status,
    amount_minor,
    currency,
    payment_method,
    payment_intent_id,
    decline_code,
    error_code,
    message,
    created_at,
    completed_at,
    next_retry_at
FROM payment_attempts
WHERE invoice_id = :invoice_id
ORDER BY attempt_no
