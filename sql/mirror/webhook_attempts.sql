-- webhook_attempts: every HTTP delivery attempt. Grain: one row per attempt.
SELECT
    seq,
    event_id,
    endpoint_id,
    attempt_no,
    webhook_id,
    CAST("at" AS TIMESTAMPTZ) AS "at",
    status_code,
    error,
    duration_ms
FROM state.webhook_attempts
