-- attempt_by_id: one payment attempt, by its id (pay_...).
-- Reads payment_attempts. Grain: one row (or none).
-- amount_minor in the currency's minor unit; times ISO 8601 UTC text ('...Z').
-- Parameters: :attempt_id.
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
WHERE id = :attempt_id
