SELECT
  s.product_id,
  p.sku,
  p.product_name,
  p.category_id,
  p.seller_id,
  p.list_price,
  p.active,
  CAST(sum(s.quantity) AS BIGINT)              AS units,
  CAST(count(DISTINCT s.order_id) AS BIGINT)   AS orders,
  CAST(sum(s.net_amount) AS DECIMAL(18,2))     AS revenue,
  CAST(sum(s.discount) AS DECIMAL(18,2))       AS discounts,
  CAST(sum(s.net_amount) / sum(s.quantity) AS DECIMAL(14,2)) AS avg_unit_revenue,
  min(s.order_date)                            AS first_sold,
  max(s.order_date)                            AS last_sold
FROM fact_sales s
LEFT JOIN (SELECT * FROM dim_product WHERE is_current AND product_key <> -1) p
  ON s.product_id = p.product_id
WHERE s.product_id IS NOT NULL
GROUP BY s.product_id, p.sku, p.product_name, p.category_id, p.seller_id, p.list_price, p.active
