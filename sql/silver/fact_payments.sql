SELECT
  id AS payment_id,
  order_id,
  method,
  amount,
  currency,
  status,
  created_at,
  paid_at,
  CAST(coalesce(paid_at, created_at) AS DATE) AS payment_date
FROM payments
