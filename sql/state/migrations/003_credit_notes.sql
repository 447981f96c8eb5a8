-- Migration 2 -> 3: credit notes, the customer balance, refunds, Stripe's events,
-- disputes, reconciliation. Run once. The invoices' new columns (amount_due: NULL means
-- the total; dispute_id, dispute_status) are added by the revision, only where missing
-- (migrations/versions/0003_credit_notes.py).

-- credit notes (docs/credit-notes.md): corrections of a finalized invoice, numbered
-- CN-YYYY-nnnnnn gap-free per issue year, immutable once issued. Amounts are decimal
-- strings in the invoice currency's major units; settlement says where the money went.
CREATE TABLE IF NOT EXISTS credit_notes (
    id                 TEXT PRIMARY KEY,                 -- cn_...
    number             TEXT NOT NULL UNIQUE,             -- CN-2024-000001
    invoice_id         TEXT NOT NULL REFERENCES invoices (id),
    workspace_id       TEXT NOT NULL,
    currency           TEXT NOT NULL,
    reason             TEXT NOT NULL CHECK (reason IN
                           ('duplicate', 'product_unsatisfactory', 'order_change', 'other')),
    memo               TEXT NOT NULL DEFAULT '',
    invoice_status     TEXT NOT NULL,                    -- the invoice's status when issued
    subtotal           TEXT NOT NULL,
    tax                TEXT NOT NULL,
    total              TEXT NOT NULL,
    total_minor        INTEGER NOT NULL,
    settlement         TEXT NOT NULL CHECK (settlement IN ('amount_due', 'refund', 'balance')),
    releases_ledger    INTEGER NOT NULL,                 -- 1: the credited units are billed again
    document           TEXT NOT NULL,                    -- the credit note JSON (frozen)
    issued_at          TEXT NOT NULL,
    json_path          TEXT,
    pdf_path           TEXT
);
CREATE INDEX IF NOT EXISTS credit_notes_invoice ON credit_notes (invoice_id);

CREATE TABLE IF NOT EXISTS credit_note_lines (
    credit_note_id   TEXT NOT NULL REFERENCES credit_notes (id),
    line_no          INTEGER NOT NULL,
    invoice_line_no  INTEGER,                            -- NULL: a lump amount
    kind             TEXT NOT NULL,                      -- the invoice line's kind, or 'lump'
    description      TEXT NOT NULL,
    metric           TEXT,
    quantity         TEXT,                               -- units (days for fees) credited
    amount           TEXT NOT NULL,                      -- before tax
    PRIMARY KEY (credit_note_id, line_no)
);

-- gap-free credit note numbers, per issue year (as invoice_numbers)
CREATE TABLE IF NOT EXISTS credit_note_numbers (
    year  INTEGER PRIMARY KEY,
    last  INTEGER NOT NULL
);

-- what an order_change credit note gives back to the billing ledger: negative rows of
-- the credited invoice's ledger rows, counted while that invoice is live (its rows are).
CREATE TABLE IF NOT EXISTS ledger_releases (
    credit_note_id  TEXT NOT NULL REFERENCES credit_notes (id),
    invoice_id      TEXT NOT NULL REFERENCES invoices (id),
    workspace_id    TEXT NOT NULL,
    period_start    TEXT NOT NULL,
    period_end      TEXT NOT NULL,
    segment_start   TEXT NOT NULL,
    segment_end     TEXT NOT NULL,
    kind            TEXT NOT NULL CHECK (kind IN ('usage', 'base_fee', 'minimum')),
    metric          TEXT NOT NULL DEFAULT '',
    plan            TEXT NOT NULL,
    quantity        TEXT NOT NULL,                       -- negative: units or days released
    amount          TEXT NOT NULL,                       -- negative, major units
    PRIMARY KEY (credit_note_id, period_start, segment_start, kind, metric)
);
CREATE INDEX IF NOT EXISTS ledger_releases_ws ON ledger_releases (workspace_id, period_start);

-- the customer balance: credits a paid invoice's credit note leaves on the account
-- (positive) and what finalization applied to a later invoice (negative)
CREATE TABLE IF NOT EXISTS balance_transactions (
    id              TEXT PRIMARY KEY,                    -- bal_... (stable per source)
    workspace_id    TEXT NOT NULL,
    currency        TEXT NOT NULL,
    kind            TEXT NOT NULL CHECK (kind IN ('credit_note', 'applied')),
    amount          TEXT NOT NULL,                       -- signed, major units
    credit_note_id  TEXT REFERENCES credit_notes (id),
    invoice_id      TEXT REFERENCES invoices (id),
    created_at      TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS balance_transactions_ws ON balance_transactions (workspace_id, currency);

-- refunds through Stripe: one per credit note, written (pending) before the request
CREATE TABLE IF NOT EXISTS refunds (
    id                 TEXT PRIMARY KEY,                 -- rfd_...
    credit_note_id     TEXT NOT NULL UNIQUE REFERENCES credit_notes (id),
    invoice_id         TEXT NOT NULL REFERENCES invoices (id),
    payment_intent_id  TEXT NOT NULL,
    idempotency_key    TEXT NOT NULL UNIQUE,             -- refund-<credit note id>
    status             TEXT NOT NULL CHECK (status IN ('pending', 'succeeded', 'failed')),
    amount_minor       INTEGER NOT NULL,
    currency           TEXT NOT NULL,
    stripe_refund_id   TEXT,
    error_code         TEXT,
    message            TEXT,
    created_at         TEXT NOT NULL,
    completed_at       TEXT
);

-- Stripe's events received on POST /v1/billing/stripe/webhook, once per Stripe event id
CREATE TABLE IF NOT EXISTS stripe_events (
    id                 TEXT PRIMARY KEY,                 -- Stripe's evt_...
    type               TEXT NOT NULL,
    object_id          TEXT NOT NULL,                    -- pi_..., ch_..., dp_...
    payment_intent_id  TEXT,
    invoice_id         TEXT,
    stripe_created     TEXT NOT NULL,
    received_at        TEXT NOT NULL,
    outcome            TEXT NOT NULL,                    -- what it did here
    payload            TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS stripe_events_invoice ON stripe_events (invoice_id);

-- disputes Stripe reported (charge.dispute.created), shown on their invoice
CREATE TABLE IF NOT EXISTS disputes (
    id                 TEXT PRIMARY KEY,                 -- Stripe's dp_...
    invoice_id         TEXT,
    payment_intent_id  TEXT,
    charge_id          TEXT,
    amount_minor       INTEGER NOT NULL,
    currency           TEXT NOT NULL,
    reason             TEXT NOT NULL,
    status             TEXT NOT NULL,
    created_at         TEXT NOT NULL
);

-- three-way reconciliation runs (lake usage, invoices, Stripe) and what they found
CREATE TABLE IF NOT EXISTS reconcile_runs (
    reconcile_id  TEXT PRIMARY KEY,                      -- rec_...
    at            TEXT NOT NULL,
    period_start  TEXT,
    period_end    TEXT,
    findings      INTEGER NOT NULL
);

CREATE TABLE IF NOT EXISTS reconcile_findings (
    reconcile_id  TEXT NOT NULL REFERENCES reconcile_runs (reconcile_id),
    kind          TEXT NOT NULL,
    invoice_id    TEXT,
    reference     TEXT,                                  -- PaymentIntent, refund, credit note ...
    expected      TEXT,
    found         TEXT,
    message       TEXT NOT NULL
);
