-- schedule_retry: a pending delivery whose attempt :attempt_no failed is due again at
-- :next_attempt_at (ISO 8601 UTC). Writes webhook_deliveries; grain: one
-- (event, endpoint); no change when another pass attempted it since.
-- Parameters: :event_id, :endpoint_id, :attempt_no, :next_attempt_at, :last_error.
UPDATE webhook_deliveries
SET next_attempt_at = :next_attempt_at, last_error = :last_error
WHERE event_id = :event_id
  AND endpoint_id = :endpoint_id
  AND status = 'pending'
  AND attempts = :attempt_no
