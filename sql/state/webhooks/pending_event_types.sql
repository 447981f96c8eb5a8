-- pending_event_types: the event types an endpoint has pending deliveries of (to stop
-- the ones it no longer subscribes to). Reads webhook_deliveries and outbox; grain: one
-- row per event type. Parameters: :endpoint_id.
SELECT DISTINCT o.type
FROM webhook_deliveries AS d
JOIN outbox AS o ON o.id = d.event_id
WHERE d.endpoint_id = :endpoint_id AND d.status = 'pending'
ORDER BY o.type
