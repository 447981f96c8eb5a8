-- rollup_all_days: every UTC day a full rebuild of the rollup must recompute: the days
-- with events and the days already in the rollup. Grain: one row per day.
-- Inputs: lake tables `events`, `usage_daily`. Cost: a scan of the `day` column of the
-- whole history (only used by an explicit rebuild).
WITH event_days AS (
    SELECT DISTINCT day FROM events
),

rollup_days AS (
    SELECT DISTINCT day FROM usage_daily
),

final AS (
    SELECT day FROM event_days
    UNION
    SELECT day FROM rollup_days
)

SELECT day FROM final
ORDER BY day
