-- refunds: every refund of a credit note through Stripe. Grain: one row per credit note
-- refunded. amount_minor in the currency's minor unit; status pending | succeeded | failed.
SELECT
    id,
    credit_note_id,
    invoice_id,
    payment_intent_id,
    status,
    amount_minor,
    currency,
    stripe_refund_id,
    error_code,
    CAST(created_at AS TIMESTAMPTZ) AS created_at,
    CAST(completed_at AS TIMESTAMPTZ) AS completed_at
FROM state.refunds
