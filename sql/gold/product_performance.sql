-- Lifetime per product. The distinct order count is a two-level aggregation
-- (orders per product first, then counted), joined on the product: plain
-- GROUP BYs spill to disk, `count(DISTINCT ...)` accumulators do not.
WITH totals AS (
  SELECT
    product_id,
    sum(quantity)    AS units,
    sum(net_amount)  AS revenue,
    sum(discount)    AS discounts,
    min(order_date)  AS first_sold,
    max(order_date)  AS last_sold
  FROM fact_sales
  WHERE product_id IS NOT NULL
  GROUP BY product_id
),
orders AS (
  SELECT product_id, count(order_id) AS orders
  FROM (
    SELECT product_id, order_id FROM fact_sales
    WHERE product_id IS NOT NULL
    GROUP BY product_id, order_id
  ) o
  GROUP BY product_id
)
SELECT
  t.product_id,
  p.sku,
  p.product_name,
  p.category_id,
  p.seller_id,
  p.list_price,
  p.active,
  CAST(t.units AS BIGINT)                       AS units,
  CAST(o.orders AS BIGINT)                      AS orders,
  CAST(t.revenue AS DECIMAL(18,2))              AS revenue,
  CAST(t.discounts AS DECIMAL(18,2))            AS discounts,
  CAST(t.revenue / t.units AS DECIMAL(14,2))    AS avg_unit_revenue,
  t.first_sold,
  t.last_sold
FROM totals t
JOIN orders o ON o.product_id = t.product_id
LEFT JOIN (SELECT * FROM dim_product WHERE is_current AND product_key <> -1) p
  ON t.product_id = p.product_id
