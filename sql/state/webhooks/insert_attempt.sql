-- insert_attempt: one recorded attempt of a delivery. Writes webhook_attempts; grain:
-- one row per attempt (seq). status_code is NULL when nothing answered (error says
-- why); duration_ms in milliseconds. Parameters: :event_id, :endpoint_id, :attempt_no,
-- :webhook_id (the webhook-id header sent), :at (ISO 8601 UTC), :status_code, :error,
-- :duration_ms.
INSERT INTO webhook_attempts (
    event_id, endpoint_id, attempt_no, webhook_id, at, status_code, error, duration_ms
)
VALUES (
    :event_id, :endpoint_id, :attempt_no, :webhook_id, :at, :status_code, :error, :duration_ms
)
