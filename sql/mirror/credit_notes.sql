-- credit_notes: every credit note. Grain: one row per credit note. Amounts in the
-- invoice currency (major units); settlement: amount_due | refund | balance;
-- releases_ledger: an order_change credit whose units the next run bills again.
SELECT
    id,
    number,
    invoice_id,
    workspace_id,
    currency,
    reason,
    memo,
    invoice_status,
    CAST(subtotal AS DECIMAL(38, 9)) AS subtotal,
    CAST(tax AS DECIMAL(38, 9)) AS tax,
    CAST(total AS DECIMAL(38, 9)) AS total,
    settlement,
    releases_ledger = 1 AS releases_ledger,
    CAST(issued_at AS TIMESTAMPTZ) AS issued_at
FROM state.credit_notes
