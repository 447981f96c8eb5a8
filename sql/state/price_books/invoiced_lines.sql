-- invoiced_lines: the lines of live finalized invoices (open, paid, overdue) that bill
-- days in the asked range, start to end (reads `invoices`, `invoice_lines`), for
-- comparing what was invoiced with a re-rating. Grain: one row per invoice line. amount: decimal string,
-- major units of currency; dates ISO (a line's own days: late lines keep the days of
-- their period, discount lines the period's days).
SELECT
    i.workspace_id,
    i.number,
    i.currency,
    l.kind,
    l.amount,
    l.period_start,
    l.period_end
FROM invoice_lines AS l
JOIN invoices AS i ON i.id = l.invoice_id
WHERE i.status IN ('open', 'paid', 'overdue')
  AND l.period_end >= :start
  AND l.period_start <= :end
ORDER BY i.workspace_id, l.period_start, i.number, l.line_no
