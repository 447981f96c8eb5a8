-- insert_stripe_event: one event Stripe sent us, once per Stripe event id (writes
-- `stripe_events`); a replay inserts nothing (rowcount 0). Grain: one row per Stripe
-- event. Times ISO 8601 UTC; payload the event JSON as received.
INSERT INTO stripe_events (
    id, type, object_id, payment_intent_id, invoice_id, stripe_created, received_at,
    outcome, payload
) VALUES (
    :id, :type, :object_id, :payment_intent_id, :invoice_id, :stripe_created, :received_at,
    :outcome, :payload
)
ON CONFLICT (id) DO NOTHING
