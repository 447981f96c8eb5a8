-- disable_endpoint: an endpoint that answered 410 Gone is disabled, with the reason and
-- the time. Writes webhook_endpoint_state; grain: one endpoint.
-- Parameters: :endpoint_id, :reason, :now (ISO 8601 UTC).
UPDATE webhook_endpoint_state
SET enabled = 0, disabled_reason = :reason, disabled_at = :now
WHERE endpoint_id = :endpoint_id
