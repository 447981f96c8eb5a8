-- insert_pending_attempt: attempt n of an invoice, committed as 'pending' BEFORE its
-- Stripe request is sent (the crash-safety rule of docs/payments.md); the outcome
-- columns stay NULL until complete_attempt.
-- Writes payment_attempts. Grain: one row per attempt (invoice_id, attempt_no), unique,
-- as is idempotency_key. amount_minor in the currency's minor unit; created_at ISO 8601
-- UTC text.
-- Parameters: :id, :invoice_id, :attempt_no, :idempotency_key, :amount_minor,
-- :currency, :payment_method, :created_at.
INSERT INTO payment_attempts (
    id,
    invoice_id,
    attempt_no,
    idempotency_key,
    status,
    amount_minor,
    currency,
    payment_method,
    created_at
)
VALUES (
    :id,
    :invoice_id,
    :attempt_no,
    :idempotency_key,
    'pending',
    :amount_minor,
    :currency,
    :payment_method,
    :created_at
)
