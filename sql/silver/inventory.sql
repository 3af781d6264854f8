SELECT product_id, warehouse, quantity, reserved, reorder_level, bin_location, last_restock_at, updated_at
FROM inventory
