-- due_deliveries: the pending deliveries of one enabled endpoint that are due at :now,
-- with their event, in the order they fell due. Reads webhook_deliveries, outbox and
-- webhook_endpoint_state; grain: one row per (event, endpoint). payload is the event's
-- JSON body (UTF-8 text), times ISO 8601 UTC. Parameters: :endpoint_id, :now.
SELECT
    d.event_id,
    d.endpoint_id,
    d.attempts,
    d.next_attempt_at,
    o.type,
    o.created_at,
    o.payload
FROM webhook_deliveries AS d
JOIN outbox AS o ON o.id = d.event_id
JOIN webhook_endpoint_state AS s ON s.endpoint_id = d.endpoint_id AND s.enabled = 1
WHERE d.endpoint_id = :endpoint_id
  AND d.status = 'pending'
  AND d.next_attempt_at <= :now
ORDER BY d.next_attempt_at, o.created_at, d.event_id
