-- set_credit_note_files: the paths of a credit note's published JSON and PDF (writes
-- `credit_notes`). Grain: one credit note.
UPDATE credit_notes
SET json_path = :json_path,
    pdf_path = :pdf_path
WHERE id = :id
