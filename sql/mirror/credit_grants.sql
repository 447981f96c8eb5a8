-- credit_grants: prepaid credit grants. Grain: one row per grant. amount in the grant's
-- currency (major units); usable from effective_on through expires_on (NULL: never);
-- lower priority drawn first. The balance is SUM(credit_ledger.amount) per grant_id.
SELECT
    id AS grant_id,
    workspace_id,
    currency,
    CAST(amount AS DECIMAL(38, 9)) AS amount,
    CAST(effective_on AS DATE) AS effective_on,
    CAST(expires_on AS DATE) AS expires_on,
    priority,
    reason,
    CAST(created_at AS TIMESTAMPTZ) AS created_at
FROM state.credit_grants
