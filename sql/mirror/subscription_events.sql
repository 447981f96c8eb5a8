-- subscription_events: the append-only history of subscription changes (create, change,
-- cancel), effective-dated. Grain: one row per recorded change.
SELECT
    seq,
    subscription_id,
    workspace_id,
    type,
    plan,
    CAST(effective_date AS DATE) AS effective_date,
    anchor_day,
    CAST(trial_end AS DATE) AS trial_end,
    CAST(recorded_at AS TIMESTAMPTZ) AS recorded_at
FROM state.subscription_events
