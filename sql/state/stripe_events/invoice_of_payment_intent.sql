-- invoice_of_payment_intent: the invoice a PaymentIntent belongs to (reads `invoices`,
-- `payment_attempts`): the invoice it paid, or the invoice of the attempt that created
-- it. Grain: zero or one invoice id.
WITH paid AS (
    SELECT id AS invoice_id
    FROM invoices
    WHERE payment_intent_id = :payment_intent_id
),

attempted AS (
    SELECT invoice_id
    FROM payment_attempts
    WHERE payment_intent_id = :payment_intent_id
),

final AS (
    SELECT invoice_id FROM paid
    UNION
    SELECT invoice_id FROM attempted
)

SELECT invoice_id
FROM final
LIMIT 1
