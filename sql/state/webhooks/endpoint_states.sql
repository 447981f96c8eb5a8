-- endpoint_states: the state of every endpoint a delivery pass has seen (configured
-- now or formerly). Reads webhook_endpoint_state; grain: one row per endpoint.
-- enabled is 1 or 0; times are ISO 8601 UTC.
SELECT
    endpoint_id,
    url,
    enabled,
    disabled_reason,
    disabled_at,
    created_at,
    deliver_since
FROM webhook_endpoint_state
ORDER BY endpoint_id
