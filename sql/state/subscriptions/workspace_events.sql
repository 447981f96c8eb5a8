-- subscriptions/workspace_events: one workspace's subscription history, oldest first.
-- Reads: subscription_events (index subscription_events_ws). Grain: one row per event
-- (seq). Parameters: :workspace_id.
SELECT
    seq,
    subscription_id,
    workspace_id,
    type,
    plan,
    effective_date,
    anchor_day,
    trial_end,
    recorded_at
FROM subscription_events
WHERE workspace_id = :workspace_id
ORDER BY seq
