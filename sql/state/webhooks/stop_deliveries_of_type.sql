-- stop_deliveries_of_type: an endpoint's pending deliveries of an event type it no
-- longer subscribes to are stopped (failed, with the reason). Writes
-- webhook_deliveries; grain: one row per (event, endpoint).
-- Parameters: :endpoint_id, :event_type.
UPDATE webhook_deliveries
SET status = 'failed',
    last_error = 'stopped: the endpoint no longer subscribes to this event type'
WHERE endpoint_id = :endpoint_id
  AND status = 'pending'
  AND event_id IN (SELECT id FROM outbox WHERE type = :event_type)
