-- mark_delivered: a delivery the receiver accepted (2xx). Writes webhook_deliveries;
-- grain: one (event, endpoint). Parameters: :event_id, :endpoint_id, :now (ISO 8601 UTC).
UPDATE webhook_deliveries
SET status = 'delivered', delivered_at = :now, last_error = NULL
WHERE event_id = :event_id AND endpoint_id = :endpoint_id AND status <> 'delivered'
