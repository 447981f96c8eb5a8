-- subscriptions: plan segments derived from subscription_events. Grain: one row per
-- (workspace, plan, effective_from); effective_to is exclusive (NULL = still in force).
WITH events AS (
    SELECT
        seq,
        subscription_id,
        workspace_id,
        type,
        plan,
        CAST(effective_date AS DATE) AS effective_date,
        anchor_day
    FROM state.subscription_events
),

segments AS (
    SELECT
        subscription_id,
        workspace_id,
        type,
        plan,
        effective_date AS effective_from,
        lead(effective_date) OVER (PARTITION BY workspace_id ORDER BY effective_date, seq) AS effective_to,
        last_value(anchor_day IGNORE NULLS) OVER (
            PARTITION BY subscription_id ORDER BY seq ROWS BETWEEN UNBOUNDED PRECEDING AND CURRENT ROW
        ) AS anchor_day
    FROM events
),

final AS (
    SELECT subscription_id, workspace_id, plan, effective_from, effective_to, anchor_day
    FROM segments
    WHERE type <> 'cancel'
)

SELECT * FROM final
