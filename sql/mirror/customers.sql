-- customers: the Stripe customer of each workspace. Grain: one row per workspace.
SELECT workspace_id, stripe_customer_id, CAST(created_at AS TIMESTAMPTZ) AS created_at
FROM state.customers
