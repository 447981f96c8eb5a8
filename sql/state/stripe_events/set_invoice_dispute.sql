-- set_invoice_dispute: show a dispute on its invoice (writes `invoices`). Grain: one
-- invoice.
UPDATE invoices
SET dispute_id = :dispute_id,
    dispute_status = :dispute_status,
    updated_at = :at
WHERE id = :id
