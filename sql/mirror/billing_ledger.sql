-- billing_ledger: what each finalized invoice billed, and what order_change credit notes
-- released of it (negative rows, credit_note_id set; docs/credit-notes.md). Grain:
-- (invoice_id, credit_note_id, period_start, segment_start, kind, metric). kind: usage
-- (quantity in the metric's unit; GB-months for storage) | base_fee | minimum (quantity
-- in days). live = the invoice is not void: only live rows count as billed (a credit
-- note's release counts with its invoice). amount in the invoice currency (major units).
WITH billed AS (
    SELECT invoice_id, CAST(NULL AS VARCHAR) AS credit_note_id, workspace_id, period_start,
           period_end, segment_start, segment_end, kind, metric, plan, quantity, amount
    FROM state.billing_ledger
),

released AS (
    SELECT invoice_id, credit_note_id, workspace_id, period_start, period_end,
           segment_start, segment_end, kind, metric, plan, quantity, amount
    FROM state.ledger_releases
),

final AS (
    SELECT * FROM billed
    UNION ALL
    SELECT * FROM released
)

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
    i.currency,
    b.credit_note_id
FROM final AS b
JOIN state.invoices AS i ON i.id = b.invoice_id
