-- invoice_ledger_rows: the billing ledger rows one invoice wrote at finalization (reads
-- `billing_ledger`). Grain: one row per (period, segment, kind, metric). Units: quantity
-- units or days, amount major units; decimal strings; dates ISO.
SELECT invoice_id, workspace_id, period_start, period_end, segment_start, segment_end,
       kind, metric, plan, quantity, amount
FROM billing_ledger
WHERE invoice_id = :invoice_id
