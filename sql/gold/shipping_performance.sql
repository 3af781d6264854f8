SELECT
  ship_date,
  coalesce(carrier_code, 'unknown')                                        AS carrier_code,
  coalesce(service, 'unknown')                                             AS service,
  CAST(count(*) AS BIGINT)                                                 AS shipments,
  CAST(count(delivered_at) AS BIGINT)                                      AS delivered,
  CAST(sum(CASE WHEN delivered_on_time THEN 1 ELSE 0 END) AS BIGINT)       AS delivered_on_time,
  CAST(sum(CASE WHEN NOT delivered_on_time THEN 1 ELSE 0 END) AS BIGINT)   AS delivered_late,
  CAST(sum(CASE WHEN NOT delivered_on_time THEN 1 ELSE 0 END) AS DOUBLE)
    / CAST(nullif(count(delivered_at), 0) AS DOUBLE)                       AS late_share,
  avg(delivery_days)                                                       AS avg_delivery_days,
  percentile_cont(0.5) WITHIN GROUP (ORDER BY delivery_days)               AS p50_delivery_days,
  percentile_cont(0.9) WITHIN GROUP (ORDER BY delivery_days)               AS p90_delivery_days,
  percentile_cont(0.95) WITHIN GROUP (ORDER BY delivery_days)              AS p95_delivery_days
FROM fact_shipments
WHERE ship_date IS NOT NULL
GROUP BY ship_date, coalesce(carrier_code, 'unknown'), coalesce(service, 'unknown')
