-- webhook_endpoints: runtime state of each configured webhook endpoint (enabled, or
-- disabled after a 410 Gone). Grain: one row per endpoint id. Secrets are never stored.
SELECT
    endpoint_id,
    url,
    CAST(enabled AS BOOLEAN) AS enabled,
    disabled_reason,
    CAST(disabled_at AS TIMESTAMPTZ) AS disabled_at,
    CAST(created_at AS TIMESTAMPTZ) AS created_at
FROM state.webhook_endpoint_state
