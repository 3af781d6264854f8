SELECT lower(trim(carrier)) AS carrier_code, initcap(trim(carrier)) AS carrier_name
FROM shipments
