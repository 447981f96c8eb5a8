-- pending_refunds: refunds Stripe has not settled yet (reads `refunds`): written before
-- a request whose answer never arrived or was never recorded, or a refund Stripe still
-- processes. Grain: one row per refund, oldest first.
SELECT *
FROM refunds
WHERE status = 'pending'
ORDER BY created_at, id
