-- settle_refund_by_stripe_id: a pending refund Stripe reports done (charge.refunded),
-- found by the credit note its metadata names (writes `refunds`). Grain: one refund.
UPDATE refunds
SET status = :status,
    stripe_refund_id = :stripe_refund_id,
    completed_at = :completed_at
WHERE credit_note_id = :credit_note_id AND status = 'pending'
