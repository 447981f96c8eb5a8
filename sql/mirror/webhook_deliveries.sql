-- webhook_deliveries: delivery state of each event to each endpoint.
-- Grain: (event_id, endpoint_id). status: pending | delivered | failed.
SELECT
    event_id,
    endpoint_id,
    status,
    attempts,
    CAST(next_attempt_at AS TIMESTAMPTZ) AS next_attempt_at,
    CAST(last_attempt_at AS TIMESTAMPTZ) AS last_attempt_at,
    CAST(delivered_at AS TIMESTAMPTZ) AS delivered_at,
    last_error
FROM state.webhook_deliveries
