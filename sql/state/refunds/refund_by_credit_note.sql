-- refund_by_credit_note: the refund of a credit note, if any (reads `refunds`). Grain:
-- zero or one row. Units: amount_minor in the currency's minor unit.
SELECT *
FROM refunds
WHERE credit_note_id = :credit_note_id
