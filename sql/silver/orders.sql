SELECT id AS order_id, customer_id, status, order_date, currency, total, discount, shipping_cost, created_at AS ordered_at
FROM orders
