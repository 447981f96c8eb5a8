-- claim_delivery: take a due delivery for one attempt: count the attempt and lease the
-- delivery (next_attempt_at moved to :lease_until) so that another pass leaves it
-- alone. Changes nothing when another pass took it first or it is no longer pending or
-- due (the caller checks the row count). Writes webhook_deliveries; grain: one
-- (event, endpoint). Parameters: :event_id, :endpoint_id, :attempts (as read),
-- :attempt_no (= :attempts + 1), :now, :lease_until, :last_error.
UPDATE webhook_deliveries
SET attempts = :attempt_no,
    last_attempt_at = :now,
    next_attempt_at = :lease_until,
    last_error = :last_error
WHERE event_id = :event_id
  AND endpoint_id = :endpoint_id
  AND status = 'pending'
  AND attempts = :attempts
  AND next_attempt_at <= :now
