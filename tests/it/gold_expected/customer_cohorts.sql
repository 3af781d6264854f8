WITH first_orders AS (
  SELECT customer_id, min(order_date) AS first_date
  FROM orders
  WHERE order_key <> -1 AND customer_id IS NOT NULL
  GROUP BY customer_id
),
activity AS (
  SELECT
    CAST(date_trunc('month', f.first_date) AS DATE) AS cohort_month,
    (date_part('year', o.order_date) - date_part('year', f.first_date)) * 12
      + date_part('month', o.order_date) - date_part('month', f.first_date) AS months_since_first,
    o.customer_id,
    o.total
  FROM orders o
  JOIN first_orders f ON o.customer_id = f.customer_id
  WHERE o.order_key <> -1 AND o.order_date IS NOT NULL
)
SELECT
  a.cohort_month,
  CAST(a.months_since_first AS INT)               AS months_since_first,
  CAST(count(DISTINCT a.customer_id) AS BIGINT)   AS active_customers,
  CAST(max(c.cohort_size) AS BIGINT)              AS cohort_size,
  CAST(count(DISTINCT a.customer_id) AS DOUBLE) / CAST(max(c.cohort_size) AS DOUBLE) AS retention,
  CAST(sum(a.total) AS DECIMAL(18,2))             AS revenue
FROM activity a
JOIN (
  SELECT CAST(date_trunc('month', first_date) AS DATE) AS cohort_month, count(*) AS cohort_size
  FROM first_orders
  GROUP BY CAST(date_trunc('month', first_date) AS DATE)
) c ON a.cohort_month = c.cohort_month
GROUP BY a.cohort_month, CAST(a.months_since_first AS INT)
