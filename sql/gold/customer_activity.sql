WITH first_orders AS (
  SELECT customer_id, min(order_date) AS first_date
  FROM orders
  WHERE order_key <> -1 AND customer_id IS NOT NULL
  GROUP BY customer_id
),
daily AS (
  SELECT o.order_date, o.customer_id, sum(o.total) AS spent, count(*) AS orders
  FROM orders o
  WHERE o.order_key <> -1 AND o.customer_id IS NOT NULL AND o.order_date IS NOT NULL
  GROUP BY o.order_date, o.customer_id
)
SELECT
  d.order_date                                                          AS activity_date,
  CAST(count(*) AS BIGINT)                                              AS active_customers,
  CAST(sum(CASE WHEN d.order_date = f.first_date THEN 1 ELSE 0 END) AS BIGINT) AS new_customers,
  CAST(sum(CASE WHEN d.order_date > f.first_date THEN 1 ELSE 0 END) AS BIGINT) AS returning_customers,
  CAST(sum(d.orders) AS BIGINT)                                         AS orders,
  CAST(sum(CASE WHEN d.order_date = f.first_date THEN d.spent ELSE 0 END) AS DECIMAL(18,2)) AS new_customer_revenue,
  CAST(sum(CASE WHEN d.order_date > f.first_date THEN d.spent ELSE 0 END) AS DECIMAL(18,2)) AS returning_customer_revenue
FROM daily d
JOIN first_orders f ON d.customer_id = f.customer_id
GROUP BY d.order_date
