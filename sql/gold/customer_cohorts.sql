-- The distinct count of active customers is a two-level aggregation (the
-- customers per cell first, then counted), joined on the grain: plain
-- GROUP BYs spill to disk, `count(DISTINCT ...)` accumulators do not.
WITH first_orders AS (
  SELECT customer_id, min(order_date) AS first_date
  FROM orders
  WHERE order_key <> -1 AND customer_id IS NOT NULL
  GROUP BY customer_id
),
activity AS (
  SELECT
    CAST(date_trunc('month', f.first_date) AS DATE) AS cohort_month,
    CAST((date_part('year', o.order_date) - date_part('year', f.first_date)) * 12
      + date_part('month', o.order_date) - date_part('month', f.first_date) AS INT) AS months_since_first,
    o.customer_id,
    o.total
  FROM orders o
  JOIN first_orders f ON o.customer_id = f.customer_id
  WHERE o.order_key <> -1 AND o.order_date IS NOT NULL
),
cells AS (
  SELECT cohort_month, months_since_first, sum(total) AS revenue
  FROM activity
  GROUP BY cohort_month, months_since_first
),
actives AS (
  SELECT cohort_month, months_since_first, count(customer_id) AS active_customers
  FROM (
    SELECT cohort_month, months_since_first, customer_id FROM activity
    GROUP BY cohort_month, months_since_first, customer_id
  ) a
  GROUP BY cohort_month, months_since_first
),
sizes AS (
  SELECT CAST(date_trunc('month', first_date) AS DATE) AS cohort_month, count(*) AS cohort_size
  FROM first_orders
  GROUP BY CAST(date_trunc('month', first_date) AS DATE)
)
SELECT
  c.cohort_month,
  c.months_since_first,
  CAST(a.active_customers AS BIGINT)            AS active_customers,
  CAST(s.cohort_size AS BIGINT)                 AS cohort_size,
  CAST(a.active_customers AS DOUBLE) / CAST(s.cohort_size AS DOUBLE) AS retention,
  CAST(c.revenue AS DECIMAL(18,2))              AS revenue
FROM cells c
JOIN actives a ON a.cohort_month = c.cohort_month AND a.months_since_first = c.months_since_first
JOIN sizes s ON s.cohort_month = c.cohort_month
