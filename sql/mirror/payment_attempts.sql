-- payment_attempts: every Stripe charge attempt. Grain: (invoice_id, attempt_no).
-- amount_minor in the currency's minor unit (cents); status: pending | succeeded |
-- declined | requires_action | failed.
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
    CAST(created_at AS TIMESTAMPTZ) AS created_at,
    CAST(completed_at AS TIMESTAMPTZ) AS completed_at,
    CAST(next_retry_at AS TIMESTAMPTZ) AS next_retry_at
FROM state.payment_attempts
