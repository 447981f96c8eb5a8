-- Migration 1 -> 2: the billing ledger replaces billed_usage (usage rows kept as they
-- are) and also records the days of fixed charges, taken from the finalized invoices'
-- base_fee and minimum lines; audit tables. Run once, in one transaction.
CREATE TABLE IF NOT EXISTS billing_ledger (
    invoice_id     TEXT NOT NULL REFERENCES invoices (id),
    workspace_id   TEXT NOT NULL,
    period_start   TEXT NOT NULL,
    period_end     TEXT NOT NULL,
    segment_start  TEXT NOT NULL,
    segment_end    TEXT NOT NULL,
    kind           TEXT NOT NULL CHECK (kind IN ('usage', 'base_fee', 'minimum')),
    metric         TEXT NOT NULL DEFAULT '',
    plan           TEXT NOT NULL,
    quantity       TEXT NOT NULL,
    amount         TEXT NOT NULL,
    PRIMARY KEY (invoice_id, period_start, segment_start, kind, metric)
);
INSERT OR IGNORE INTO billing_ledger
SELECT invoice_id, workspace_id, period_start, period_end, segment_start, segment_end,
       'usage', metric, plan, quantity, amount
FROM billed_usage;
INSERT OR IGNORE INTO billing_ledger
SELECT l.invoice_id, i.workspace_id, i.period_start, i.period_end, l.period_start, l.period_end,
       l.kind, '', l.plan,
       CASE l.kind WHEN 'base_fee' THEN l.quantity
                   ELSE CAST(json_extract(l.detail, '$.days') AS TEXT) END,
       l.amount
FROM invoice_lines AS l JOIN invoices AS i ON i.id = l.invoice_id
WHERE l.kind IN ('base_fee', 'minimum') AND i.number IS NOT NULL;
DROP TABLE billed_usage;
