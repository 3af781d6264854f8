SELECT
  payment_date,
  coalesce(method, 'unknown')                  AS method,
  coalesce(status, 'unknown')                  AS status,
  CAST(count(*) AS BIGINT)                     AS payments,
  CAST(sum(amount) AS DECIMAL(18,2))           AS amount,
  CAST(sum(amount) AS DOUBLE)
    / CAST(sum(sum(amount)) OVER (PARTITION BY payment_date) AS DOUBLE) AS share_of_day_amount
FROM fact_payments
WHERE payment_date IS NOT NULL
GROUP BY payment_date, coalesce(method, 'unknown'), coalesce(status, 'unknown')
