-- invoices: one row per invoice (all statuses), mirrored from the state store.
-- Amounts in major units of `currency` (DECIMAL(38,9), exact); total_minor in minor units.
-- amount_due: the total minus credit notes issued while unpaid and the customer balance
-- applied at finalization (what a payment charges).
SELECT
    id,
    workspace_id,
    CAST(period_start AS DATE) AS period_start,
    CAST(period_end AS DATE) AS period_end,
    kind,
    status,
    number,
    currency,
    CAST(subtotal AS DECIMAL(38, 9)) AS subtotal,
    CAST(tax_rate AS DECIMAL(38, 9)) AS tax_rate,
    CAST(tax AS DECIMAL(38, 9)) AS tax,
    CAST(total AS DECIMAL(38, 9)) AS total,
    total_minor,
    price_book_version,
    lake_snapshot_id,
    CAST(created_at AS TIMESTAMPTZ) AS created_at,
    CAST(issued_at AS TIMESTAMPTZ) AS issued_at,
    CAST(due_date AS DATE) AS due_date,
    CAST(finalized_at AS TIMESTAMPTZ) AS finalized_at,
    CAST(paid_at AS TIMESTAMPTZ) AS paid_at,
    CAST(voided_at AS TIMESTAMPTZ) AS voided_at,
    CAST(overdue_at AS TIMESTAMPTZ) AS overdue_at,
    payment_intent_id,
    json_path,
    pdf_path,
    CAST(COALESCE(amount_due, total) AS DECIMAL(38, 9)) AS amount_due,
    dispute_id,
    dispute_status
FROM state.invoices
