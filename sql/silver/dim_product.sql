SELECT
  id              AS product_id,
  upper(trim(sku)) AS sku,
  trim(name)      AS product_name,
  seller_id,
  category_id,
  price           AS list_price,
  weight_kg,
  active
FROM products
