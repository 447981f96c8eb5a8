-- stop_endpoint_deliveries: every pending delivery of an endpoint that was just
-- disabled is stopped (failed, with the reason). Writes webhook_deliveries; grain: one
-- row per (event, endpoint). Parameters: :endpoint_id, :last_error.
UPDATE webhook_deliveries
SET status = 'failed', last_error = :last_error
WHERE endpoint_id = :endpoint_id AND status = 'pending'
