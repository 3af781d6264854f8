SELECT
  order_id,
  line_no,
  product_id,
  quantity,
  unit_price,
  discount,
  tax_rate,
  CAST(quantity * unit_price AS DECIMAL(14,2))            AS gross_amount,
  CAST(quantity * unit_price - discount AS DECIMAL(14,2)) AS net_amount
FROM order_items
