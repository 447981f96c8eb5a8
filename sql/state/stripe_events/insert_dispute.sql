-- insert_dispute: a dispute (chargeback) Stripe reported (writes `disputes`); once per
-- dispute id, a later report updates its status. Grain: one row per dispute. Units:
-- amount_minor in the currency's minor unit; created_at ISO 8601 UTC.
INSERT INTO disputes (
    id, invoice_id, payment_intent_id, charge_id, amount_minor, currency, reason, status,
    created_at
) VALUES (
    :id, :invoice_id, :payment_intent_id, :charge_id, :amount_minor, :currency, :reason,
    :status, :created_at
)
ON CONFLICT (id) DO UPDATE SET status = excluded.status
