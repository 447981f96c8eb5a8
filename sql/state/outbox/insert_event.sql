-- insert_event: an event appended to the outbox, in the transaction of the state change
-- it reports; an event already there (same id: same type, subject and discriminator)
-- is left as it is. Writes outbox; grain: one row per event.
-- Parameters: :id, :type, :workspace_id (or NULL), :subject_id, :created_at (ISO 8601
-- UTC, when it entered the outbox), :payload (the JSON body delivered).
INSERT INTO outbox (id, type, workspace_id, subject_id, created_at, payload)
VALUES (:id, :type, :workspace_id, :subject_id, :created_at, :payload)
ON CONFLICT (id) DO NOTHING
