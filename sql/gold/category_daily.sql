-- Each distinct count is its own two-level aggregation (distinct values per
-- grain first, then counted), joined on the grain: plain GROUP BYs spill to
-- disk, `count(DISTINCT ...)` accumulators do not.
WITH sales AS (
  SELECT
    f.order_date,
    coalesce(p.category_id, -1) AS category_id,
    f.order_id,
    f.product_id,
    f.quantity,
    f.net_amount,
    f.discount
  FROM fact_sales f
  LEFT JOIN dim_product p ON f.product_key = p.product_key
  WHERE f.order_date IS NOT NULL
),
totals AS (
  SELECT order_date, category_id,
         sum(quantity) AS items, sum(net_amount) AS revenue, sum(discount) AS discounts
  FROM sales
  GROUP BY order_date, category_id
),
orders AS (
  SELECT order_date, category_id, count(order_id) AS orders
  FROM (SELECT order_date, category_id, order_id FROM sales GROUP BY order_date, category_id, order_id) o
  GROUP BY order_date, category_id
),
products AS (
  SELECT order_date, category_id, count(product_id) AS products_sold
  FROM (SELECT order_date, category_id, product_id FROM sales GROUP BY order_date, category_id, product_id) p
  GROUP BY order_date, category_id
)
SELECT
  t.order_date,
  t.category_id,
  CAST(o.orders AS BIGINT)              AS orders,
  CAST(t.items AS BIGINT)               AS items,
  CAST(p.products_sold AS BIGINT)       AS products_sold,
  CAST(t.revenue AS DECIMAL(18,2))      AS revenue,
  CAST(t.discounts AS DECIMAL(18,2))    AS discounts
FROM totals t
JOIN orders o ON o.order_date = t.order_date AND o.category_id = t.category_id
JOIN products p ON p.order_date = t.order_date AND p.category_id = t.category_id
