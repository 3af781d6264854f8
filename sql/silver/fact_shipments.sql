SELECT
  id AS shipment_id,
  order_id,
  lower(trim(carrier)) AS carrier_code,
  service,
  status,
  warehouse,
  promised_date,
  created_at,
  shipped_at,
  delivered_at,
  CAST(shipped_at AS DATE) AS ship_date,
  CAST(delivered_at AS DATE) AS delivery_date,
  CAST(to_unixtime(delivered_at) - to_unixtime(shipped_at) AS DOUBLE) / 86400.0 AS delivery_days,
  CAST(delivered_at AS DATE) <= promised_date AS delivered_on_time
FROM shipments
