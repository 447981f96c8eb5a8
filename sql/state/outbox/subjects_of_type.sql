-- subjects_of_type: the subjects that already have an event of one type (for
-- billing.usage.recorded: the ingests already reported). Reads outbox; grain: one row
-- per subject_id. Parameters: :type.
SELECT DISTINCT subject_id
FROM outbox
WHERE type = :type
