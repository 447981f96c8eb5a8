-- customer_of_workspace: the Stripe customer recorded for a workspace (cus_...).
-- Reads customers. Grain: one row per workspace (or none).
-- Parameters: :workspace_id.
SELECT stripe_customer_id
FROM customers
WHERE workspace_id = :workspace_id
