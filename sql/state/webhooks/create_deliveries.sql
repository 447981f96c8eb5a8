-- create_deliveries: the missing delivery rows of one enabled endpoint: one per event of
-- the outbox created since the endpoint's deliver_since (of :event_type; NULL: of every
-- type), pending, first due at the event's time. Writes webhook_deliveries; grain: one
-- row per (event, endpoint). Parameters: :endpoint_id, :event_type (or NULL).
-- (CAST(... AS TEXT) IS NULL: a NULL parameter typed, as Postgres needs it.)
INSERT INTO webhook_deliveries (event_id, endpoint_id, status, attempts, next_attempt_at)
SELECT o.id, s.endpoint_id, 'pending', 0, o.created_at
FROM outbox AS o
JOIN webhook_endpoint_state AS s ON s.endpoint_id = :endpoint_id AND s.enabled = 1
WHERE o.created_at >= s.deliver_since
  AND (CAST(:event_type AS TEXT) IS NULL OR o.type = :event_type)
  AND NOT EXISTS (
      SELECT 1 FROM webhook_deliveries AS d
      WHERE d.event_id = o.id AND d.endpoint_id = s.endpoint_id
  )
