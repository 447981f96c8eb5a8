-- State store (SQLite, WAL): the transactional state of billing-batch.
-- Invoices, numbering, payment attempts, customers, subscriptions and the webhook
-- outbox need small, frequent, atomic writes and unique constraints; the lake (Parquet)
-- does not do those well. Every table here is mirrored into the lake for analysts
-- (sql/mirror/*.sql). Amounts are decimal strings in major units (exact); *_minor
-- columns are integers in the currency's minor unit; dates are ISO 'YYYY-MM-DD'; times
-- are ISO 8601 UTC with 'Z'.

CREATE TABLE IF NOT EXISTS invoices (
    id                 TEXT PRIMARY KEY,                 -- inv_...
    workspace_id       TEXT NOT NULL,
    period_start       TEXT NOT NULL,                    -- inclusive
    period_end         TEXT NOT NULL,                    -- inclusive
    kind               TEXT NOT NULL DEFAULT 'regular',  -- regular | final (after a cancellation) | debit (a rerate's undercharge)
    status             TEXT NOT NULL CHECK (status IN ('draft', 'open', 'paid', 'void', 'overdue')),
    number             TEXT UNIQUE,                      -- INV-2024-000001, set at finalize
    currency           TEXT NOT NULL,
    subtotal           TEXT NOT NULL,
    tax_rate           TEXT NOT NULL,
    tax                TEXT NOT NULL,
    total              TEXT NOT NULL,
    total_minor        INTEGER NOT NULL,
    price_book_version TEXT NOT NULL,
    lake_snapshot_id   INTEGER,
    document           TEXT NOT NULL,                    -- the invoice JSON (frozen once open)
    created_at         TEXT NOT NULL,
    updated_at         TEXT NOT NULL,
    issued_at          TEXT,
    due_date           TEXT,
    finalized_at       TEXT,
    paid_at            TEXT,
    voided_at          TEXT,
    overdue_at         TEXT,
    payment_intent_id  TEXT,
    json_path          TEXT,
    pdf_path           TEXT,
    amount_due         TEXT,                             -- total minus credits and balance (NULL: total)
    dispute_id         TEXT,                             -- Stripe's dp_... (charge.dispute.created)
    dispute_status     TEXT                              -- the dispute's status as Stripe reported it
);
-- never a second live invoice for one workspace and period (a debit invoice, issued by a
-- rerate for the period's undercharge, is beside it, not instead of it)
CREATE UNIQUE INDEX IF NOT EXISTS invoices_live_period
    ON invoices (workspace_id, period_start, period_end)
    WHERE status <> 'void' AND kind <> 'debit';
CREATE INDEX IF NOT EXISTS invoices_status ON invoices (status, due_date);
-- the overlap check of every finalization (debit invoices included: the partial index
-- above cannot serve it)
CREATE INDEX IF NOT EXISTS invoices_workspace ON invoices (workspace_id, period_start);

CREATE TABLE IF NOT EXISTS invoice_lines (
    invoice_id    TEXT NOT NULL REFERENCES invoices (id) ON DELETE CASCADE,
    line_no       INTEGER NOT NULL,
    kind          TEXT NOT NULL,        -- usage | base_fee | minimum | late_usage
    description   TEXT NOT NULL,
    metric        TEXT,
    plan          TEXT,
    quantity      TEXT,
    unit          TEXT,
    unit_price    TEXT,
    amount        TEXT NOT NULL,
    period_start  TEXT NOT NULL,        -- the days this line covers
    period_end    TEXT NOT NULL,
    detail        TEXT NOT NULL,        -- JSON: tiers, included units, proration, ...
    PRIMARY KEY (invoice_id, line_no)
);

CREATE TABLE IF NOT EXISTS invoice_status_history (
    seq          INTEGER PRIMARY KEY AUTOINCREMENT,
    invoice_id   TEXT NOT NULL REFERENCES invoices (id) ON DELETE CASCADE,
    from_status  TEXT,
    to_status    TEXT NOT NULL,
    at           TEXT NOT NULL,
    reason       TEXT NOT NULL DEFAULT ''
);

-- gap-free invoice numbers, per year: the counter moves only when a draft finalizes
CREATE TABLE IF NOT EXISTS invoice_numbers (
    year  INTEGER PRIMARY KEY,
    last  INTEGER NOT NULL
);

-- the billing ledger: what each finalized invoice billed, per billing period, segment
-- (a run of days with one plan), kind and metric. Usage rows hold units; base_fee and
-- minimum rows hold the fixed charge's days. A void releases an invoice's rows (queries
-- count rows of live finalized invoices only). Late usage is "period total now minus
-- what the ledger says was billed" (docs/billing-rules.md).
CREATE TABLE IF NOT EXISTS billing_ledger (
    invoice_id     TEXT NOT NULL REFERENCES invoices (id),
    workspace_id   TEXT NOT NULL,
    period_start   TEXT NOT NULL,        -- the billing period billed (inclusive)
    period_end     TEXT NOT NULL,
    segment_start  TEXT NOT NULL,        -- the segment's days (inclusive)
    segment_end    TEXT NOT NULL,
    kind           TEXT NOT NULL CHECK (kind IN ('usage', 'base_fee', 'minimum')),
    metric         TEXT NOT NULL DEFAULT '',   -- '' for fixed charges
    plan           TEXT NOT NULL,
    quantity       TEXT NOT NULL,        -- usage: units (decimal); fixed charges: days
    amount         TEXT NOT NULL,        -- major units (decimal string)
    PRIMARY KEY (invoice_id, period_start, segment_start, kind, metric)
);
CREATE INDEX IF NOT EXISTS billing_ledger_ws ON billing_ledger (workspace_id, period_start);

-- audits: each run of the audit (docs/billing-rules.md §10) and what it found
CREATE TABLE IF NOT EXISTS audit_runs (
    audit_id          TEXT PRIMARY KEY,               -- aud_...
    run_id            TEXT,                           -- the nightly run, if any
    as_of             TEXT NOT NULL,                  -- periods that ended before it
    lake_snapshot_id  INTEGER,
    at                TEXT NOT NULL,
    mode              TEXT NOT NULL,                  -- strict | now
    periods_checked   INTEGER NOT NULL,
    findings          INTEGER NOT NULL,
    unexplained       INTEGER NOT NULL
);

CREATE TABLE IF NOT EXISTS audit_findings (
    audit_id         TEXT NOT NULL REFERENCES audit_runs (audit_id),
    workspace_id     TEXT NOT NULL,
    period_start     TEXT NOT NULL,
    period_end       TEXT NOT NULL,
    segment_start    TEXT,
    segment_end      TEXT,
    kind             TEXT NOT NULL,                   -- usage | base_fee | minimum | unbilled_period | ledger_mismatch
    metric           TEXT NOT NULL DEFAULT '',
    lake_quantity    TEXT,
    billed_quantity  TEXT,
    status           TEXT NOT NULL CHECK (status IN ('explained', 'unexplained')),
    reason           TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS audit_findings_audit ON audit_findings (audit_id);

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

CREATE TABLE IF NOT EXISTS customers (
    workspace_id        TEXT PRIMARY KEY,
    stripe_customer_id  TEXT NOT NULL,
    created_at          TEXT NOT NULL
);

CREATE TABLE IF NOT EXISTS payment_attempts (
    id                 TEXT PRIMARY KEY,                 -- pay_...
    invoice_id         TEXT NOT NULL REFERENCES invoices (id),
    attempt_no         INTEGER NOT NULL,
    idempotency_key    TEXT NOT NULL UNIQUE,             -- invoice-<id>-attempt-<n>
    status             TEXT NOT NULL CHECK (status IN
                           ('pending', 'succeeded', 'declined', 'requires_action', 'failed')),
    amount_minor       INTEGER NOT NULL,
    currency           TEXT NOT NULL,
    payment_method     TEXT,
    payment_intent_id  TEXT,
    decline_code       TEXT,
    error_code         TEXT,
    message            TEXT,
    created_at         TEXT NOT NULL,
    completed_at       TEXT,
    next_retry_at      TEXT,
    UNIQUE (invoice_id, attempt_no)
);

-- subscriptions: an append-only history of effective-dated events; the state on any
-- day is derived from it, nothing is overwritten
CREATE TABLE IF NOT EXISTS subscription_events (
    seq              INTEGER PRIMARY KEY AUTOINCREMENT,
    subscription_id  TEXT NOT NULL,                      -- sub_...
    workspace_id     TEXT NOT NULL,
    type             TEXT NOT NULL CHECK (type IN ('create', 'change', 'cancel')),
    plan             TEXT,
    effective_date   TEXT NOT NULL,
    anchor_day       INTEGER,
    trial_end        TEXT,
    recorded_at      TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS subscription_events_ws ON subscription_events (workspace_id, seq);

-- the webhook outbox: written in the same transaction as the state change it reports
CREATE TABLE IF NOT EXISTS outbox (
    id            TEXT PRIMARY KEY,                      -- evt_... (deterministic per change)
    type          TEXT NOT NULL,
    workspace_id  TEXT,
    subject_id    TEXT NOT NULL,                         -- invoice id, ingest id, ...
    created_at    TEXT NOT NULL,
    payload       TEXT NOT NULL                          -- {"type", "timestamp", "data"}
);
CREATE INDEX IF NOT EXISTS outbox_created ON outbox (created_at);

CREATE TABLE IF NOT EXISTS webhook_endpoint_state (
    endpoint_id      TEXT PRIMARY KEY,
    url              TEXT NOT NULL,
    enabled          INTEGER NOT NULL DEFAULT 1,
    disabled_reason  TEXT,
    disabled_at      TEXT,
    created_at       TEXT NOT NULL,                      -- first seen by a delivery pass
    deliver_since    TEXT NOT NULL                       -- events created from then on are delivered
);

CREATE TABLE IF NOT EXISTS webhook_deliveries (
    event_id         TEXT NOT NULL REFERENCES outbox (id),
    endpoint_id      TEXT NOT NULL,
    status           TEXT NOT NULL CHECK (status IN ('pending', 'delivered', 'failed')),
    attempts         INTEGER NOT NULL DEFAULT 0,
    next_attempt_at  TEXT NOT NULL,
    last_attempt_at  TEXT,
    delivered_at     TEXT,
    last_error       TEXT,
    PRIMARY KEY (event_id, endpoint_id)
);
CREATE INDEX IF NOT EXISTS webhook_deliveries_due ON webhook_deliveries (status, next_attempt_at);

CREATE TABLE IF NOT EXISTS webhook_attempts (
    seq           INTEGER PRIMARY KEY AUTOINCREMENT,
    event_id      TEXT NOT NULL,
    endpoint_id   TEXT NOT NULL,
    attempt_no    INTEGER NOT NULL,
    webhook_id    TEXT NOT NULL,                         -- the webhook-id header sent
    at            TEXT NOT NULL,
    status_code   INTEGER,
    error         TEXT,
    duration_ms   INTEGER
);

CREATE TABLE IF NOT EXISTS runs (
    run_id       TEXT PRIMARY KEY,                       -- run_...
    run_date     TEXT NOT NULL,
    started_at   TEXT NOT NULL,
    finished_at  TEXT,
    status       TEXT NOT NULL,                          -- running | succeeded | failed
    summary      TEXT                                    -- JSON
);

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
