-- delivery_counts: how many deliveries each endpoint has in each status. Reads
-- webhook_deliveries; grain: one row per (endpoint, status); n is a count.
SELECT endpoint_id, status, COUNT(*) AS n
FROM webhook_deliveries
GROUP BY endpoint_id, status
