-- insert_invoice: a new invoice row, a draft (writes `invoices`). Grain: one row.
-- Amounts are decimal strings in major units, total_minor an integer in minor units;
-- document is the invoice JSON; amount_due NULL until finalized (NULL: the total).
-- Parameters: one per column written.
INSERT INTO invoices (
    id, workspace_id, period_start, period_end, kind, status, number, currency,
    subtotal, tax_rate, tax, total, total_minor, price_book_version, lake_snapshot_id,
    document, created_at, updated_at, issued_at, due_date, finalized_at, amount_due
) VALUES (
    :id, :workspace_id, :period_start, :period_end, :kind, :status, :number, :currency,
    :subtotal, :tax_rate, :tax, :total, :total_minor, :price_book_version, :lake_snapshot_id,
    :document, :created_at, :updated_at, :issued_at, :due_date, :finalized_at, :amount_due
)
