-- insert_credit_note: one issued credit note (writes `credit_notes`; never updated but
-- for the paths of its files). Grain: one row per credit note. Units: amounts decimal
-- strings in major units, total_minor in the currency's minor unit; times ISO 8601 UTC.
INSERT INTO credit_notes (
    id, number, invoice_id, workspace_id, currency, reason, memo, invoice_status,
    subtotal, tax, total, total_minor, settlement, releases_ledger, document, issued_at
) VALUES (
    :id, :number, :invoice_id, :workspace_id, :currency, :reason, :memo, :invoice_status,
    :subtotal, :tax, :total, :total_minor, :settlement, :releases_ledger, :document, :issued_at
)
