-- give_up_delivery: a pending delivery whose last attempt (:attempt_no) failed at or
-- after its deadline is given up. Writes webhook_deliveries; grain: one
-- (event, endpoint); no change when another pass attempted it since.
-- Parameters: :event_id, :endpoint_id, :attempt_no, :last_error.
UPDATE webhook_deliveries
SET status = 'failed', last_error = :last_error
WHERE event_id = :event_id
  AND endpoint_id = :endpoint_id
  AND status = 'pending'
  AND attempts = :attempt_no
