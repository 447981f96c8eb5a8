-- payments_in_flight: the invoice's payment attempts whose outcome is not known yet
-- (reads `payment_attempts`): pending, or failed without an answer and without a
-- PaymentIntent (network error, 5xx). Grain: one row per such attempt.
SELECT id, attempt_no, status, error_code
FROM payment_attempts
WHERE invoice_id = :invoice_id
  AND (status = 'pending'
       OR (status = 'failed' AND payment_intent_id IS NULL
           AND error_code IN ('api_connection_error', 'api_error')))
