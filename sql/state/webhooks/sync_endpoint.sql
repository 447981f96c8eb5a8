-- sync_endpoint: a configured webhook endpoint, recorded the first time a delivery pass
-- sees it (enabled, receiving the events created from :deliver_since on), its URL kept
-- current afterwards. Writes webhook_endpoint_state; grain: one row per endpoint.
-- Parameters: :endpoint_id, :url, :now (first seen) and :deliver_since (ISO 8601 UTC).
INSERT INTO webhook_endpoint_state (endpoint_id, url, enabled, created_at, deliver_since)
VALUES (:endpoint_id, :url, 1, :now, :deliver_since)
ON CONFLICT (endpoint_id) DO UPDATE SET url = excluded.url
WHERE webhook_endpoint_state.url <> excluded.url
