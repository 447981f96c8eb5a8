-- insert_ledger_row: one row of what a finalized invoice billed (writes `billing_ledger`;
-- run per row, in the transaction that finalizes the invoice). Grain: one row per
-- (invoice, period, segment, kind, metric). Units: quantity = units (usage) or days
-- (base_fee, minimum); amount in major units; both decimal strings; dates ISO.
INSERT INTO billing_ledger (
    invoice_id, workspace_id, period_start, period_end, segment_start, segment_end,
    kind, metric, plan, quantity, amount
) VALUES (
    :invoice_id, :workspace_id, :period_start, :period_end, :segment_start, :segment_end,
    :kind, :metric, :plan, :quantity, :amount
)
