-- Migration 2 -> 3: stored price-book versions (content-addressed), prepaid credit
-- grants and their balance ledger; the one-live-invoice-per-period index leaves out
-- debit invoices (a rerate's undercharge). Run once, in one transaction.
DROP INDEX IF EXISTS invoices_live_period;
CREATE UNIQUE INDEX IF NOT EXISTS invoices_live_period
    ON invoices (workspace_id, period_start, period_end)
    WHERE status <> 'void' AND kind <> 'debit';
-- price-book versions: each book, content-addressed by its digest (sha256 of the
-- normalized content, rating.plans.book_digest), stored the first time it prices an
-- invoice, so that an invoice is explained and re-rated with its own book.
CREATE TABLE IF NOT EXISTS price_book_versions (
    digest         TEXT PRIMARY KEY,                 -- sha256:<hex>
    version        TEXT NOT NULL,                    -- the book's version string
    source         TEXT NOT NULL,                    -- the file it was first read from
    content        TEXT NOT NULL,                    -- the TOML text as read
    first_used_at  TEXT NOT NULL                     -- ISO 8601 UTC
);

-- prepaid credit grants: an amount of one currency a workspace may draw down from
-- effective_on through expires_on (NULL: never expires); lower priority first.
CREATE TABLE IF NOT EXISTS credit_grants (
    id             TEXT PRIMARY KEY,                 -- cg_...
    workspace_id   TEXT NOT NULL,
    currency       TEXT NOT NULL,
    amount         TEXT NOT NULL,                    -- granted, major units
    effective_on   TEXT NOT NULL,                    -- ISO date, first day usable
    expires_on     TEXT,                             -- ISO date, last day usable
    priority       INTEGER NOT NULL DEFAULT 0,
    reason         TEXT NOT NULL DEFAULT '',
    created_at     TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS credit_grants_workspace ON credit_grants (workspace_id, currency);

-- the credit balance ledger: every movement of a grant, signed (+ grant, - drawdown by
-- an invoice at finalization, - expiry of what was left). A grant's balance is the sum
-- of its rows. id is deterministic (grant, kind, invoice): a rerun adds nothing.
CREATE TABLE IF NOT EXISTS credit_ledger (
    id             TEXT PRIMARY KEY,                 -- <grant>:<kind>:<invoice or ''>
    grant_id       TEXT NOT NULL REFERENCES credit_grants (id),
    workspace_id   TEXT NOT NULL,
    currency       TEXT NOT NULL,
    kind           TEXT NOT NULL CHECK (kind IN ('grant', 'drawdown', 'expiry')),
    amount         TEXT NOT NULL,                    -- signed, major units
    invoice_id     TEXT,                             -- the drawing invoice
    on_date        TEXT NOT NULL,                    -- ISO date it counts on
    recorded_at    TEXT NOT NULL                     -- ISO 8601 UTC
);
CREATE INDEX IF NOT EXISTS credit_ledger_grant ON credit_ledger (grant_id);
CREATE INDEX IF NOT EXISTS credit_ledger_invoice ON credit_ledger (invoice_id);
