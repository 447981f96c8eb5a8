-- set_invoice_status: move an invoice to :status at :at (writes `invoices`). Grain: one
-- row, by :id. :paid_at, :voided_at, :overdue_at and :payment_intent_id are set when not
-- NULL (the move's own timestamp; a payment's reference), else left as they are.
UPDATE invoices
SET status = :status,
    updated_at = :at,
    paid_at = COALESCE(:paid_at, paid_at),
    voided_at = COALESCE(:voided_at, voided_at),
    overdue_at = COALESCE(:overdue_at, overdue_at),
    payment_intent_id = COALESCE(:payment_intent_id, payment_intent_id)
WHERE id = :id
