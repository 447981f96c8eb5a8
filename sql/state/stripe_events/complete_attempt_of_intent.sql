-- complete_attempt_of_intent: the attempt whose PaymentIntent Stripe reports succeeded
-- out of band (3-D Secure completed later) becomes succeeded (writes
-- `payment_attempts`). Grain: the attempts with this PaymentIntent still waiting.
UPDATE payment_attempts
SET status = 'succeeded',
    completed_at = :completed_at,
    next_retry_at = NULL,
    message = :message
WHERE payment_intent_id = :payment_intent_id
  AND status IN ('pending', 'requires_action')
