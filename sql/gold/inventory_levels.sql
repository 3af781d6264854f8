SELECT
  i.product_id,
  i.warehouse,
  p.sku,
  p.category_id,
  i.quantity,
  i.reserved,
  i.quantity - i.reserved                       AS available,
  i.reorder_level,
  i.quantity - i.reserved <= i.reorder_level    AS below_reorder,
  i.last_restock_at,
  i.updated_at
FROM inventory i
LEFT JOIN (SELECT * FROM dim_product WHERE is_current AND product_key <> -1) p
  ON i.product_id = p.product_id
WHERE i.inventory_key <> -1
