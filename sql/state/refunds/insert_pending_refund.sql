-- insert_pending_refund: a refund of a credit note, written (pending) in the transaction
-- that issues the credit note, before any request to Stripe (writes `refunds`). Grain:
-- one row per credit note. Units: amount_minor in the currency's minor unit.
INSERT INTO refunds (
    id, credit_note_id, invoice_id, payment_intent_id, idempotency_key, status,
    amount_minor, currency, created_at
) VALUES (
    :id, :credit_note_id, :invoice_id, :payment_intent_id, :idempotency_key, 'pending',
    :amount_minor, :currency, :created_at
)
