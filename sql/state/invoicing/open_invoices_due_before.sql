-- open_invoices_due_before: open invoices whose due date is before :as_of (reads
-- `invoices`). Grain: one row per invoice id, by due date. Parameters: :as_of (ISO date).
SELECT id
FROM invoices
WHERE status = 'open'
  AND due_date < :as_of
ORDER BY due_date
