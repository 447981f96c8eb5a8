-- billing_ledger: what each finalized invoice billed. Grain: (invoice_id, period_start,
-- segment_start, kind, metric). kind: usage (quantity in the metric's unit; GB-months for
-- storage) | base_fee | minimum (quantity in days). live = the invoice is not void: only
-- live rows count as billed. amount in the invoice currency (major units).
SELECT
    b.invoice_id,
    i.number AS invoice_number,
    i.status AS invoice_status,
    i.status <> 'void' AS live,
    b.workspace_id,
    CAST(b.period_start AS DATE) AS period_start,
    CAST(b.period_end AS DATE) AS period_end,
    CAST(b.segment_start AS DATE) AS segment_start,
    CAST(b.segment_end AS DATE) AS segment_end,
    b.kind,
    b.metric,
    b.plan,
    CAST(b.quantity AS DECIMAL(38, 9)) AS quantity,
    CAST(b.amount AS DECIMAL(38, 9)) AS amount,
    i.currency
FROM state.billing_ledger AS b
JOIN state.invoices AS i ON i.id = b.invoice_id
