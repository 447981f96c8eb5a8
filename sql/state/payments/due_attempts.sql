-- due_attempts: the last attempt of every invoice that dunning acts on at :now:
--   * pending (a crash or a concurrent run left it unknown): resolved, whatever the
--     invoice's status;
--   and, for an open or overdue invoice,
--   * failed without an answer (:api_connection_error, :api_error: the request may
--     have been executed; payment_intent_id unknown): resolved;
--   * failed or declined, its next_retry_at come, made BEFORE :now (so a rerun of the
--     same business time retries nothing) and fewer than :max_attempts so far: retried;
--   * requires_action with a PaymentIntent: checked, never retried.
-- Reads payment_attempts, invoices. Grain: one row per invoice (its last attempt).
-- Times are ISO 8601 UTC text ('...Z'), compared as text.
-- Parameters: :now, :max_attempts (1 + the schedule's length), :api_connection_error,
-- :api_error (the unanswered error codes, payments.stripe_gateway.AMBIGUOUS_ERRORS).
WITH

attempts AS (
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
),

invoice_statuses AS (
    SELECT id, number, status
    FROM invoices
),

last_attempts AS (
    SELECT a.*
    FROM attempts AS a
    WHERE a.attempt_no = (
        SELECT MAX(b.attempt_no) FROM attempts AS b WHERE b.invoice_id = a.invoice_id
    )
),

final AS (
    SELECT
        a.*,
        i.number AS invoice_number
    FROM last_attempts AS a
    INNER JOIN invoice_statuses AS i ON i.id = a.invoice_id
    WHERE
        a.status = 'pending'
        OR (
            i.status IN ('open', 'overdue')
            AND (
                (
                    a.status = 'failed'
                    AND a.error_code IN (:api_connection_error, :api_error)
                    AND a.payment_intent_id IS NULL
                )
                OR (
                    a.status IN ('failed', 'declined')
                    AND a.next_retry_at IS NOT NULL
                    AND a.next_retry_at <= :now
                    AND a.created_at < :now
                    AND a.attempt_no < :max_attempts
                )
                OR (a.status = 'requires_action' AND a.payment_intent_id IS NOT NULL)
            )
        )
)

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
FROM final
ORDER BY invoice_number, invoice_id
