-- subscriptions/insert_event: append one event (create, change or cancel) to the history.
-- Writes: subscription_events (one row; seq is assigned). Dates are ISO 'YYYY-MM-DD',
-- recorded_at ISO 8601 UTC. Parameters: :subscription_id, :workspace_id, :type, :plan
-- (NULL for a cancel), :effective_date, :anchor_day and :trial_end (create only, else
-- NULL), :recorded_at.
INSERT INTO subscription_events (
    subscription_id,
    workspace_id,
    type,
    plan,
    effective_date,
    anchor_day,
    trial_end,
    recorded_at
)
VALUES (
    :subscription_id,
    :workspace_id,
    :type,
    :plan,
    :effective_date,
    :anchor_day,
    :trial_end,
    :recorded_at
)
