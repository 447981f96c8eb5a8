-- subscriptions/events: the whole subscription history, oldest first (each subscription's
-- state is derived from its events; nothing is overwritten).
-- Reads: subscription_events. Grain: one row per event (seq).
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
ORDER BY seq
