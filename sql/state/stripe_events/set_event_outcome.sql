-- set_event_outcome: what a recorded Stripe event did here (writes `stripe_events`).
-- Grain: one Stripe event.
UPDATE stripe_events
SET outcome = :outcome,
    invoice_id = COALESCE(:invoice_id, invoice_id)
WHERE id = :id
