-- credit_ledger: every movement of a prepaid credit balance. Grain: one row per (grant,
-- kind, invoice). kind: grant (+) | drawdown (-, by invoice_id at its finalization) |
-- expiry (-, what was left after expires_on). amount signed, in currency (major units);
-- a workspace's balance on day D = SUM(amount) WHERE on_date <= D, per currency.
SELECT
    l.id AS movement_id,
    l.grant_id,
    l.workspace_id,
    l.currency,
    l.kind,
    CAST(l.amount AS DECIMAL(38, 9)) AS amount,
    l.invoice_id,
    i.number AS invoice_number,
    CAST(l.on_date AS DATE) AS on_date,
    CAST(l.recorded_at AS TIMESTAMPTZ) AS recorded_at
FROM state.credit_ledger AS l
LEFT JOIN state.invoices AS i ON i.id = l.invoice_id
