SELECT id AS seller_id, trim(name) AS seller_name, upper(country) AS country, rating, active
FROM sellers
