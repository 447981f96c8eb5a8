-- refunds_of_invoice: every refund of an invoice, oldest first (reads `refunds`). Grain:
-- one row per refund. Units: amount_minor in the currency's minor unit.
SELECT *
FROM refunds
WHERE invoice_id = :invoice_id
ORDER BY created_at, id
