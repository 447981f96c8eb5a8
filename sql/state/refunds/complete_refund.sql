-- complete_refund: what Stripe said about a pending refund (writes `refunds`); only a
-- pending refund changes, so a second recorder of the same answer writes nothing.
-- Grain: one refund. :status pending | succeeded | failed.
UPDATE refunds
SET status = :status,
    stripe_refund_id = COALESCE(:stripe_refund_id, stripe_refund_id),
    error_code = :error_code,
    message = :message,
    completed_at = :completed_at
WHERE id = :id AND status = 'pending'
