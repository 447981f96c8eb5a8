-- insert_customer: record a workspace's Stripe customer; the first one recorded stays
-- (a concurrent run that created or found the same customer changes nothing).
-- Writes customers. Grain: one row per workspace. created_at: ISO 8601 UTC text.
-- Parameters: :workspace_id, :stripe_customer_id, :created_at.
INSERT INTO customers (workspace_id, stripe_customer_id, created_at)
VALUES (:workspace_id, :stripe_customer_id, :created_at)
ON CONFLICT (workspace_id) DO NOTHING
