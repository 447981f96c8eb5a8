-- delivery_attempts: the attempts of one delivery, in the order they were made. Reads
-- webhook_attempts; grain: one row per attempt. status_code is NULL when nothing
-- answered; duration_ms in milliseconds. Parameters: :event_id, :endpoint_id.
SELECT attempt_no, webhook_id, at, status_code, error, duration_ms
FROM webhook_attempts
WHERE event_id = :event_id AND endpoint_id = :endpoint_id
ORDER BY seq
