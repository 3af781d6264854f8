SELECT
  f.order_date,
  coalesce(p.category_id, -1)                   AS category_id,
  CAST(count(DISTINCT f.order_id) AS BIGINT)    AS orders,
  CAST(sum(f.quantity) AS BIGINT)               AS items,
  CAST(count(DISTINCT f.product_id) AS BIGINT)  AS products_sold,
  CAST(sum(f.net_amount) AS DECIMAL(18,2))      AS revenue,
  CAST(sum(f.discount) AS DECIMAL(18,2))        AS discounts
FROM fact_sales f
LEFT JOIN dim_product p ON f.product_key = p.product_key
WHERE f.order_date IS NOT NULL
GROUP BY f.order_date, coalesce(p.category_id, -1)
