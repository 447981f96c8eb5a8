-- fail_delivery: a pending delivery that will not be attempted again (its endpoint
-- answered 410 Gone). Writes webhook_deliveries; grain: one (event, endpoint).
-- Parameters: :event_id, :endpoint_id, :last_error.
UPDATE webhook_deliveries
SET status = 'failed', last_error = :last_error
WHERE event_id = :event_id AND endpoint_id = :endpoint_id AND status = 'pending'
