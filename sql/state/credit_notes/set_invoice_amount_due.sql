-- set_invoice_amount_due: what is left to pay on an invoice after a credit note or the
-- customer balance (writes `invoices`). Grain: one invoice. Units: :amount_due decimal
-- string in major units.
UPDATE invoices
SET amount_due = :amount_due,
    updated_at = :at
WHERE id = :id
