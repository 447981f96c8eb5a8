-- outbox: every webhook event ever produced. Grain: one row per event id.
SELECT
    id,
    type,
    workspace_id,
    subject_id,
    CAST(created_at AS TIMESTAMPTZ) AS created_at,
    CAST(payload AS JSON) AS payload
FROM state.outbox
