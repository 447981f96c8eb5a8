-- insert_ledger_release: a negative ledger row an order_change credit note gives back
-- (writes `ledger_releases`). Grain: one row per (credit note, period, segment, kind,
-- metric). Units: quantity (units or days) and amount (major units), both negative
-- decimal strings; dates ISO.
INSERT INTO ledger_releases (
    credit_note_id, invoice_id, workspace_id, period_start, period_end, segment_start,
    segment_end, kind, metric, plan, quantity, amount
) VALUES (
    :credit_note_id, :invoice_id, :workspace_id, :period_start, :period_end, :segment_start,
    :segment_end, :kind, :metric, :plan, :quantity, :amount
)
