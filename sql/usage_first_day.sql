-- usage_first_day: each workspace's first UTC day with usage in the daily rollup (its
-- first activity, from which its billing periods start). Grain: one row per workspace_id.
-- Units: first_day is a DATE. Parameters: $workspace_ids (VARCHAR[], NULL = every workspace).
WITH rollup AS (
    SELECT workspace_id, day
    FROM usage_daily
    WHERE CAST($workspace_ids AS VARCHAR[]) IS NULL
       OR list_contains(CAST($workspace_ids AS VARCHAR[]), workspace_id)
),

final AS (
    SELECT workspace_id, min(day) AS first_day
    FROM rollup
    GROUP BY workspace_id
)

SELECT workspace_id, first_day FROM final
ORDER BY workspace_id
