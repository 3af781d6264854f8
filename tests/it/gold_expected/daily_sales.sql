SELECT
  order_date,
  CAST(count(DISTINCT order_id) AS BIGINT)                          AS orders,
  CAST(count(*) AS BIGINT)                                          AS order_lines,
  CAST(sum(quantity) AS BIGINT)                                     AS items,
  CAST(sum(gross_amount) AS DECIMAL(18,2))                          AS gross_revenue,
  CAST(sum(discount) AS DECIMAL(18,2))                              AS discounts,
  CAST(sum(net_amount) AS DECIMAL(18,2))                            AS net_revenue,
  CAST(sum(net_amount) / count(DISTINCT order_id) AS DECIMAL(18,2)) AS avg_order_value,
  CAST(count(DISTINCT customer_id) AS BIGINT)                       AS customers
FROM fact_sales
WHERE order_date IS NOT NULL
GROUP BY order_date
