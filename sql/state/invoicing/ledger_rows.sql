-- ledger_rows: the billing ledger's rows, each with the status of the invoice that
-- billed it (reads `billing_ledger`, `invoices`). The caller counts the rows of live
-- finalized invoices only (invoicing.model.FINALIZED): a void releases its rows. The
-- negative rows an order_change credit note released (`ledger_releases`) count with
-- the rows of their invoice (docs/credit-notes.md).
-- Grain: one row per ledger row (invoice, period, segment, kind, metric), in the order
-- the invoices were finalized. Units: quantity = units (usage) or days (base_fee,
-- minimum); amount in major units; both decimal strings; dates ISO.
-- Parameters: :workspace_id (NULL = every workspace). The filter is written as a range
-- (one workspace: from it to itself; NULL: from the first to the last) so that the index
-- billing_ledger_ws serves a single workspace.
WITH ledger AS (
    SELECT invoice_id, workspace_id, period_start, period_end, segment_start, segment_end,
           kind, metric, plan, quantity, amount
    FROM billing_ledger
    WHERE workspace_id
        BETWEEN COALESCE(:workspace_id, (SELECT MIN(workspace_id) FROM billing_ledger))
            AND COALESCE(:workspace_id, (SELECT MAX(workspace_id) FROM billing_ledger))
    UNION ALL
    SELECT invoice_id, workspace_id, period_start, period_end, segment_start, segment_end,
           kind, metric, plan, quantity, amount
    FROM ledger_releases
    WHERE workspace_id
        BETWEEN COALESCE(:workspace_id, (SELECT MIN(workspace_id) FROM ledger_releases))
            AND COALESCE(:workspace_id, (SELECT MAX(workspace_id) FROM ledger_releases))
),

billing_invoices AS (
    SELECT id, status, finalized_at
    FROM invoices
),

final AS (
    SELECT l.workspace_id, l.period_start, l.period_end, l.segment_start, l.segment_end,
           l.kind, l.metric, l.plan, l.quantity, l.amount, i.status,
           i.finalized_at, i.id AS invoice_id
    FROM ledger AS l
    JOIN billing_invoices AS i ON i.id = l.invoice_id
)

SELECT workspace_id, period_start, period_end, segment_start, segment_end, kind, metric,
       plan, quantity, amount, status
FROM final
ORDER BY finalized_at, invoice_id
