-- stripe_event_by_id: a recorded Stripe event's outcome (reads `stripe_events`). Grain:
-- zero or one row.
SELECT id, type, outcome, invoice_id
FROM stripe_events
WHERE id = :id
