-- insert_status_history: one move of an invoice's status (writes
-- `invoice_status_history`). Grain: one row per move. :from_status is NULL at creation;
-- :at is ISO 8601 UTC.
INSERT INTO invoice_status_history (invoice_id, from_status, to_status, at, reason)
VALUES (:invoice_id, :from_status, :to_status, :at, :reason)
