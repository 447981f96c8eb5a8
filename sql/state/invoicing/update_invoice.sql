-- update_invoice: rewrite an invoice row (a refreshed draft, or the draft finalized)
-- (writes `invoices`; a finalized draft's amount due with it). Grain: one row, by :id.
-- Payment, void, overdue and file columns are left as they are. Parameters: as
-- insert_invoice.
UPDATE invoices
SET workspace_id = :workspace_id,
    period_start = :period_start,
    period_end = :period_end,
    kind = :kind,
    status = :status,
    number = :number,
    currency = :currency,
    subtotal = :subtotal,
    tax_rate = :tax_rate,
    tax = :tax,
    total = :total,
    total_minor = :total_minor,
    price_book_version = :price_book_version,
    lake_snapshot_id = :lake_snapshot_id,
    document = :document,
    created_at = :created_at,
    updated_at = :updated_at,
    issued_at = :issued_at,
    due_date = :due_date,
    finalized_at = :finalized_at,
    amount_due = :amount_due
WHERE id = :id
