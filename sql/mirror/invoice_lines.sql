-- invoice_lines: one row per invoice line item. Grain: (invoice_id, line_no).
-- kind: usage | base_fee | minimum | late_usage | late_base_fee | late_minimum. amount in the invoice currency (major units).
SELECT
    l.invoice_id,
    i.workspace_id,
    i.status AS invoice_status,
    i.currency,
    l.line_no,
    l.kind,
    l.description,
    l.metric,
    l.plan,
    CAST(l.quantity AS DECIMAL(38, 9)) AS quantity,
    l.unit,
    CAST(l.unit_price AS DECIMAL(38, 9)) AS unit_price,
    CAST(l.amount AS DECIMAL(38, 9)) AS amount,
    CAST(l.period_start AS DATE) AS period_start,
    CAST(l.period_end AS DATE) AS period_end,
    CAST(l.detail AS JSON) AS detail
FROM state.invoice_lines AS l
JOIN state.invoices AS i ON i.id = l.invoice_id
