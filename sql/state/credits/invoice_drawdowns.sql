-- invoice_drawdowns: what prepaid credits paid of one invoice (reads `credit_ledger`).
-- Grain: one row per grant drawn; amount signed decimal string (negative, major units).
SELECT grant_id, amount
FROM credit_ledger
WHERE invoice_id = :invoice_id AND kind = 'drawdown'
ORDER BY id
