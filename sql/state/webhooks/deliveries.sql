-- deliveries: deliveries with their event, newest event first, optionally of one
-- status, endpoint and event (a NULL parameter does not filter). Reads
-- webhook_deliveries and outbox; grain: one row per (event, endpoint); times ISO 8601
-- UTC. Parameters: :status, :endpoint_id, :event_id (each or NULL).
-- (CAST(... AS TEXT) IS NULL: a NULL parameter typed, as Postgres needs it.)
SELECT
    d.event_id,
    d.endpoint_id,
    d.status,
    d.attempts,
    d.next_attempt_at,
    d.last_attempt_at,
    d.delivered_at,
    d.last_error,
    o.type,
    o.workspace_id,
    o.subject_id,
    o.created_at AS event_created_at
FROM webhook_deliveries AS d
JOIN outbox AS o ON o.id = d.event_id
WHERE (CAST(:status AS TEXT) IS NULL OR d.status = :status)
  AND (CAST(:endpoint_id AS TEXT) IS NULL OR d.endpoint_id = :endpoint_id)
  AND (CAST(:event_id AS TEXT) IS NULL OR d.event_id = :event_id)
ORDER BY o.created_at DESC, d.event_id, d.endpoint_id
