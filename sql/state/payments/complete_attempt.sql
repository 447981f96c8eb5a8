-- complete_attempt: an attempt's outcome (status pending | succeeded | declined |
-- requires_action | failed), written in the same transaction as its consequence (the
-- invoice paid, or the billing.invoice.payment_failed event).
-- Writes payment_attempts. Grain: one row, by id.
-- completed_at (NULL while still pending) and next_retry_at: ISO 8601 UTC text.
-- Parameters: :attempt_id, :status, :payment_intent_id, :decline_code, :error_code,
-- :message, :completed_at, :next_retry_at.
UPDATE payment_attempts
SET
    status = :status,
    payment_intent_id = :payment_intent_id,
    decline_code = :decline_code,
    error_code = :error_code,
    message = :message,
    completed_at = :completed_at,
    next_retry_at = :next_retry_at
WHERE id = :attempt_id
