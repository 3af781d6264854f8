-- One change of public.customers → one dim_customer row.
SELECT
  id                                        AS customer_id,
  external_id,
  encode(sha256(lower(trim(email))), 'hex') AS email_sha256,
  trim(first_name) || ' ' || left(trim(last_name), 1) || '.' AS display_name,
  trim(city)                                AS city,
  upper(country)                            AS country,
  segment,
  marketing_opt_in,
  created_at                                AS customer_since
FROM customers
