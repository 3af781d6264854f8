-- Each distinct count is its own two-level aggregation (distinct values per
-- day first, then counted), joined on the day: plain GROUP BYs spill to disk,
-- `count(DISTINCT ...)` accumulators do not.
WITH lines AS (
  SELECT
    order_date,
    count(*)           AS order_lines,
    sum(quantity)      AS items,
    sum(gross_amount)  AS gross_revenue,
    sum(discount)      AS discounts,
    sum(net_amount)    AS net_revenue
  FROM fact_sales
  WHERE order_date IS NOT NULL
  GROUP BY order_date
),
orders AS (
  SELECT order_date, count(order_id) AS orders
  FROM (
    SELECT order_date, order_id FROM fact_sales
    WHERE order_date IS NOT NULL
    GROUP BY order_date, order_id
  ) o
  GROUP BY order_date
),
customers AS (
  SELECT order_date, count(customer_id) AS customers
  FROM (
    SELECT order_date, customer_id FROM fact_sales
    WHERE order_date IS NOT NULL
    GROUP BY order_date, customer_id
  ) c
  GROUP BY order_date
)
SELECT
  l.order_date,
  CAST(o.orders AS BIGINT)                                  AS orders,
  CAST(l.order_lines AS BIGINT)                             AS order_lines,
  CAST(l.items AS BIGINT)                                   AS items,
  CAST(l.gross_revenue AS DECIMAL(18,2))                    AS gross_revenue,
  CAST(l.discounts AS DECIMAL(18,2))                        AS discounts,
  CAST(l.net_revenue AS DECIMAL(18,2))                      AS net_revenue,
  CAST(l.net_revenue / o.orders AS DECIMAL(18,2))           AS avg_order_value,
  CAST(c.customers AS BIGINT)                               AS customers
FROM lines l
JOIN orders o ON o.order_date = l.order_date
JOIN customers c ON c.order_date = l.order_date
