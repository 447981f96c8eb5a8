-- enable_endpoint: a disabled endpoint enabled again; it receives the events created
-- from :now on (not the ones it missed). Writes webhook_endpoint_state; grain: one
-- endpoint (no change when it is enabled). Parameters: :endpoint_id, :now (ISO 8601 UTC).
UPDATE webhook_endpoint_state
SET enabled = 1, disabled_reason = NULL, disabled_at = NULL, deliver_since = :now
WHERE endpoint_id = :endpoint_id AND enabled = 0
